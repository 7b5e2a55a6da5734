//! What a failed HTTP request was: its kind for the books (`classify`) and its text for
//! people, with the causes beneath reqwest's own words (`describe`). Shared by the send side,
//! signals and the webhook ping; not what an answer that did come means.

use crate::metrics::ErrorKind;

/// The error kind a failed request is counted under: the I/O or TLS error beneath it when
/// there is one.
pub fn classify(e: &reqwest::Error) -> ErrorKind {
    if e.is_timeout() {
        return ErrorKind::RequestTimeout;
    }
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(s) = source {
        if let Some(io) = s.downcast_ref::<std::io::Error>() {
            return super::connector::classify_io(io);
        }
        if s.downcast_ref::<rustls::Error>().is_some() {
            return ErrorKind::Tls;
        }
        source = s.source();
    }
    if e.is_connect() {
        ErrorKind::ConnectFailed
    } else {
        ErrorKind::Protocol
    }
}

/// What went wrong with a request, with the causes beneath it (reqwest's own text stops at
/// "error sending request for url (...)"; the cause says refused, reset or timed out),
/// secrets redacted.
pub fn describe(e: &reqwest::Error) -> String {
    let mut text = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        let cause = s.to_string();
        if !text.contains(&cause) {
            text.push_str(": ");
            text.push_str(&cause);
        }
        source = s.source();
    }
    crate::secrets::redact(&text)
}

/// The deepest cause beneath a failed request ("Connection refused (os error 111)"), for a
/// sentence that already says what was being done; secrets redacted.
pub fn innermost(e: &reqwest::Error) -> String {
    let mut deepest: &dyn std::error::Error = e;
    while let Some(s) = deepest.source() {
        deepest = s;
    }
    crate::secrets::redact(&deepest.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_failed_request_says_why() {
        // A port just closed: nothing listens there.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .expect("a free port");
        let e = reqwest::Client::new()
            .get(format!("http://127.0.0.1:{port}/"))
            .send()
            .await
            .expect_err("nothing listens");
        let said = describe(&e);
        assert!(said.starts_with("error sending request"), "{said}");
        assert!(said.contains("Connection refused"), "{said}");
        assert!(!e.to_string().contains("Connection refused"), "{e}");
        assert!(
            innermost(&e).starts_with("Connection refused"),
            "{}",
            innermost(&e)
        );
    }
}
