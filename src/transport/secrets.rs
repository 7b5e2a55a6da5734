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
    if let Ok(mut k) = KNOWN.write()
        && !k.iter().any(|v| v == value)
    {
        k.push(value.to_string());
    }
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
