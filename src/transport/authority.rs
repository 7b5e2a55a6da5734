//! Where a target's URL points: its host and port, and the `host:port` a socket connects to.
//!
//! Owns the one reading of a URL's authority for every protocol: user information dropped,
//! an IPv6 host's brackets taken off for TLS names and put back for connecting, and each
//! scheme's default port. It does not connect (`source` does) nor check that a scheme suits
//! a protocol (each protocol's setup does).

/// A URL's host (an IPv6 address without its brackets) and port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Authority {
    pub host: String,
    pub port: u16,
}

impl Authority {
    /// The host and port of `url`; the scheme's default port when it names none. `None` for
    /// a URL that does not parse, has no host, or names neither a port nor a scheme whose
    /// port is known.
    pub fn of(url: &str) -> Option<Authority> {
        let u = reqwest::Url::parse(url.trim()).ok()?;
        let port = u.port().or_else(|| default_port(u.scheme()))?;
        let host = u.host_str()?.trim_start_matches('[').trim_end_matches(']');
        (!host.is_empty()).then(|| Authority {
            host: host.to_string(),
            port,
        })
    }

    /// `host:port` to connect to, an IPv6 host in brackets.
    pub fn address(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }
}

/// The port a scheme chatload speaks means when a URL names none.
pub fn default_port(scheme: &str) -> Option<u16> {
    match scheme {
        "ws" | "http" => Some(80),
        "wss" | "https" => Some(443),
        "mqtt" | "tcp" => Some(1883),
        "mqtts" | "ssl" => Some(8883),
        "xmpp" => Some(5222),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn of(url: &str) -> Option<(String, u16, String)> {
        Authority::of(url).map(|a| (a.host.clone(), a.port, a.address()))
    }

    #[test]
    fn hosts_ports_and_addresses() {
        let a = |h: &str, p: u16, addr: &str| Some((h.to_string(), p, addr.to_string()));
        assert_eq!(
            of("mqtt://127.0.0.1:1884"),
            a("127.0.0.1", 1884, "127.0.0.1:1884")
        );
        assert_eq!(
            of("mqtts://broker.example"),
            a("broker.example", 8883, "broker.example:8883")
        );
        assert_eq!(of("mqtt://[::1]:1883"), a("::1", 1883, "[::1]:1883"));
        // Brackets and no port: the scheme's port, the address bracketed again.
        assert_eq!(of("mqtt://[::1]"), a("::1", 1883, "[::1]:1883"));
        assert_eq!(of("xmpp://[::1]"), a("::1", 5222, "[::1]:5222"));
        assert_eq!(of("wss://[::1]/chat"), a("::1", 443, "[::1]:443"));
        // User information is never part of the host (nor of any text made from it).
        assert_eq!(
            of("mqtt://alice:s3cret@broker.example:1999/x"),
            a("broker.example", 1999, "broker.example:1999")
        );
        assert_eq!(
            of(" xmpp://chat.example "),
            a("chat.example", 5222, "chat.example:5222")
        );
    }

    #[test]
    fn urls_without_a_host_or_a_known_port_are_none() {
        assert_eq!(of("mqtt://"), None);
        assert_eq!(of("gopher://h"), None);
        assert_eq!(of("not a url"), None);
        assert_eq!(of("mqtt://h:99999"), None);
    }
}
