//! chatload as a business: the API client that sends the business patterns' requests, and the
//! webhook receiver that joins statuses and inbound messages back to them.

pub mod client;
pub mod runtime;
pub mod webhook;

/// The business API's base URL for a WebSocket target URL (same host and port).
pub fn http_base(ws_url: &str) -> String {
    let (scheme, rest) = match ws_url.split_once("://") {
        Some(("wss", rest)) => ("https", rest),
        Some((_, rest)) => ("http", rest),
        None => ("http", ws_url),
    };
    let host = rest.split('/').next().unwrap_or(rest);
    format!("{scheme}://{host}")
}

#[cfg(test)]
mod tests {
    #[test]
    fn http_base_keeps_host_and_port() {
        assert_eq!(
            super::http_base("ws://127.0.0.1:7070/v1/ws"),
            "http://127.0.0.1:7070"
        );
        assert_eq!(
            super::http_base("wss://chat.example/v1/ws"),
            "https://chat.example"
        );
    }
}
