//! Credentials: tokens, user names and passwords come from environment variables the
//! scenario names (never from the file itself), and their values never reach a report, a log
//! or an error — every error text passes through [`redact`]. Owns reading and hiding them.

use std::sync::RwLock;

/// A value that must not be shown.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("***")
    }
}

/// Names of the environment variables that hold the target's credentials.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct CredentialNames {
    pub token_env: Option<String>,
    pub username_env: Option<String>,
    pub password_env: Option<String>,
}

/// The credentials themselves, read once at the start of a run.
#[derive(Debug, Clone, Default)]
pub struct Credentials {
    pub token: Option<Secret>,
    pub username: Option<Secret>,
    pub password: Option<Secret>,
}

#[derive(Debug, thiserror::Error)]
#[error(
    "the scenario's [target] takes {what} from the environment variable {name}, which is not set; export {name} before the run"
)]
pub struct MissingVariable {
    pub what: &'static str,
    pub name: String,
}

static KNOWN: RwLock<Vec<String>> = RwLock::new(Vec::new());

fn read(name: &Option<String>, what: &'static str) -> Result<Option<Secret>, MissingVariable> {
    let Some(name) = name else { return Ok(None) };
    match std::env::var(name) {
        Ok(v) if !v.is_empty() => {
            remember(&v);
            Ok(Some(Secret(v)))
        }
        _ => Err(MissingVariable {
            what,
            name: name.clone(),
        }),
    }
}

/// Registers a value that [`redact`] must hide from now on.
pub fn remember(value: &str) {
    // Very short values would blank out ordinary words of an error message.
    if value.len() < 4 {
        return;
    }
    let Ok(mut k) = KNOWN.write() else { return };
    for form in encoded_forms(value) {
        if form.len() >= 4 && !k.contains(&form) {
            k.push(form);
        }
    }
    // Longest first: a form that contains another is hidden whole, not in part.
    k.sort_by_key(|v| std::cmp::Reverse(v.len()));
}

/// Remembers a user name and password as HTTP Basic authentication sends them
/// (`base64(user:password)`), besides the password itself.
pub fn remember_pair(user: &str, password: &str) {
    remember(password);
    remember(&format!("{user}:{password}"));
}

/// The forms in which a peer may echo a secret back: as it is, JSON-escaped, URL-encoded
/// and base64 (standard and URL-safe, with and without padding).
fn encoded_forms(value: &str) -> Vec<String> {
    use base64::Engine as _;
    use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD};
    let json = serde_json::to_string(value).unwrap_or_default();
    let json = json
        .strip_prefix('"')
        .and_then(|j| j.strip_suffix('"'))
        .unwrap_or(value)
        .to_string();
    let url = percent_encoding::utf8_percent_encode(value, percent_encoding::NON_ALPHANUMERIC)
        .to_string();
    let bytes = value.as_bytes();
    vec![
        value.to_string(),
        json,
        url,
        STANDARD.encode(bytes),
        STANDARD_NO_PAD.encode(bytes),
        URL_SAFE.encode(bytes),
        URL_SAFE_NO_PAD.encode(bytes),
    ]
}

/// `text` redacted, then cut to at most `max` characters: in this order, so that a secret
/// straddling the cut cannot leave its first part behind.
pub fn excerpt(text: &str, max: usize) -> String {
    redact(text).chars().take(max).collect()
}

impl Credentials {
    pub fn from_env(names: &CredentialNames) -> Result<Self, MissingVariable> {
        Ok(Credentials {
            token: read(&names.token_env, "a token")?,
            username: read(&names.username_env, "a user name")?,
            password: read(&names.password_env, "a password")?,
        })
    }
}

/// `text` with every known secret value replaced by `***`.
pub fn redact(text: &str) -> String {
    let Ok(known) = KNOWN.read() else {
        return text.to_string();
    };
    let mut out = text.to_string();
    for v in known.iter() {
        if out.contains(v.as_str()) {
            out = out.replace(v.as_str(), "***");
        }
    }
    out
}

/// A URL with any `user:password@` part hidden, for reports.
/// Remembers the credentials inside a URL (`scheme://user:password@host`), so that they are
/// hidden wherever they turn up, also as an HTTP Basic header.
pub fn remember_url(url: &str) {
    let Some(scheme_end) = url.find("://") else {
        return;
    };
    let rest = &url[scheme_end + 3..];
    let authority = &rest[..rest.find('/').unwrap_or(rest.len())];
    let Some(at) = authority.rfind('@') else {
        return;
    };
    let userinfo = &authority[..at];
    let decode = |s: &str| {
        percent_encoding::percent_decode_str(s)
            .decode_utf8_lossy()
            .into_owned()
    };
    match userinfo.split_once(':') {
        Some((user, password)) => {
            remember_pair(user, password);
            remember_pair(&decode(user), &decode(password));
        }
        None => remember(&decode(userinfo)),
    }
}

pub fn redact_url(url: &str) -> String {
    let Some(scheme_end) = url.find("://") else {
        return redact(url);
    };
    let rest = &url[scheme_end + 3..];
    let authority_end = rest.find('/').unwrap_or(rest.len());
    match rest[..authority_end].rfind('@') {
        Some(at) => redact(&format!("{}://***@{}", &url[..scheme_end], &rest[at + 1..])),
        None => redact(url),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_secret_is_hidden_in_every_form_a_peer_may_echo_it() {
        remember("TOK\"se\\cret/Z+1");
        remember_url("http://bob-x9:pa%3Ass-77@host/");
        use base64::Engine as _;
        let b64 = base64::engine::general_purpose::STANDARD;
        for echoed in [
            "TOK\"se\\cret/Z+1".to_string(),
            serde_json::json!({"m": "TOK\"se\\cret/Z+1"}).to_string(),
            "TOK%22se%5Ccret%2FZ%2B1".to_string(),
            b64.encode("TOK\"se\\cret/Z+1"),
            format!("Basic {}", b64.encode("bob-x9:pa:ss-77")),
            format!("Basic {}", b64.encode("bob-x9:pa%3Ass-77")),
            "pa:ss-77".to_string(),
        ] {
            let shown = redact(&format!("got {echoed} back"));
            assert!(
                !shown.contains("cret") && !shown.contains("ss-77"),
                "{echoed} → {shown}"
            );
            assert!(shown.contains("***"), "{echoed} → {shown}");
        }
    }

    #[test]
    fn an_excerpt_is_redacted_before_it_is_cut() {
        remember("TOKsecretZ-0042");
        let text = format!("{}TOKsecretZ-0042", "P".repeat(144));
        let cut = excerpt(&text, 160);
        assert!(!cut.contains("TOKsec"), "{cut}");
        assert!(cut.ends_with("***"), "{cut}");
    }

    #[test]
    fn remembered_values_are_hidden() {
        remember("s3cr3t-token-value");
        assert_eq!(
            redact("auth failed for s3cr3t-token-value at x"),
            "auth failed for *** at x"
        );
    }

    #[test]
    fn a_missing_variable_is_named_not_guessed() {
        let names = CredentialNames {
            token_env: Some("CHATLOAD_TEST_SURELY_UNSET".into()),
            ..Default::default()
        };
        let e = Credentials::from_env(&names).unwrap_err();
        assert!(e.to_string().contains("CHATLOAD_TEST_SURELY_UNSET"));
    }

    #[test]
    fn debug_never_prints_a_secret() {
        let s = Secret("hunter2hunter2".into());
        assert_eq!(format!("{s:?}"), "***");
    }

    #[test]
    fn urls_lose_their_user_info() {
        assert_eq!(
            redact_url("mqtts://alice:pw@broker:8883/x"),
            "mqtts://***@broker:8883/x"
        );
        assert_eq!(redact_url("ws://h:1/v1/ws"), "ws://h:1/v1/ws");
    }
}
