//! Credentials: tokens, user names and passwords come from environment variables the
//! scenario names, or per user from a CSV file it names (never from the scenario itself), and
//! their values never reach a report, a log or an error — every error text passes through
//! [`redact`]. Owns reading and hiding them.

use aho_corasick::{AhoCorasick, MatchKind};
use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::{Arc, RwLock};

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
    /// A CSV file of per-user credentials.
    pub file: Option<PathBuf>,
}

/// The credentials themselves, read once at the start of a run.
#[derive(Debug, Clone, Default)]
pub struct Credentials {
    pub token: Option<Secret>,
    pub username: Option<Secret>,
    pub password: Option<Secret>,
    /// Per-user values from the CSV file, by chatload's user number.
    pub per_user: Option<Arc<HashMap<u32, UserSecrets>>>,
}

/// One user's row of the credentials file (an empty cell: the environment's value).
#[derive(Debug, Clone, Default)]
pub struct UserSecrets {
    pub token: Option<Secret>,
    pub username: Option<Secret>,
    pub password: Option<Secret>,
}

/// Why the credentials could not be read.
#[derive(Debug, thiserror::Error)]
pub enum CredentialsError {
    #[error(transparent)]
    Missing(#[from] MissingVariable),
    #[error("{path}: {message}")]
    File { path: String, message: String },
}

/// The largest credentials file read, and the largest cell.
const MAX_FILE: u64 = 256 << 20;
const MAX_CELL: usize = 4096;

#[derive(Debug, thiserror::Error)]
#[error(
    "the scenario's [target] takes {what} from the environment variable {name}, which is not set; export {name} before the run"
)]
pub struct MissingVariable {
    pub what: &'static str,
    pub name: String,
}

/// Every form of every secret, and one automaton that finds them all in one pass (a run
/// with a credentials file knows one per user: checking them one by one would cost each
/// error text a scan per secret).
struct Known {
    forms: Vec<String>,
    seen: Option<HashSet<String>>,
    matcher: Option<AhoCorasick>,
}

static KNOWN: RwLock<Known> = RwLock::new(Known {
    forms: Vec::new(),
    seen: None,
    matcher: None,
});

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
    remember_all([value]);
}

/// Registers many values at once (one rebuild of the matcher).
pub fn remember_all<'a>(values: impl IntoIterator<Item = &'a str>) {
    let Ok(mut k) = KNOWN.write() else { return };
    let k = &mut *k;
    let seen = k.seen.get_or_insert_with(HashSet::new);
    let mut added = false;
    for value in values {
        // Very short values would blank out ordinary words of an error message.
        if value.len() < 4 {
            continue;
        }
        for form in encoded_forms(value) {
            if form.len() >= 4 && seen.insert(form.clone()) {
                k.forms.push(form);
                added = true;
            }
        }
    }
    if added {
        // Leftmost-longest: a form that contains another is hidden whole, not in part.
        k.matcher = AhoCorasick::builder()
            .match_kind(MatchKind::LeftmostLongest)
            .build(&k.forms)
            .ok();
    }
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
/// straddling the cut cannot leave its first part behind. Control characters are written as
/// escapes (see [`printable`]).
pub fn excerpt(text: &str, max: usize) -> String {
    printable(&redact(text)).chars().take(max).collect()
}

/// `text` with every control character written as its Rust escape (`\u{1b}`, `\n`): what a
/// target says reaches a terminal in error examples, and an escape sequence in it could
/// move the cursor and overwrite the figures printed above.
pub fn printable(text: &str) -> String {
    if !text.chars().any(char::is_control) {
        return text.to_string();
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        if c.is_control() {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    out
}

impl Credentials {
    /// The environment's values, and the file's per user when the scenario names one.
    pub fn from_env(names: &CredentialNames) -> Result<Self, CredentialsError> {
        Ok(Credentials {
            token: read(&names.token_env, "a token")?,
            username: read(&names.username_env, "a user name")?,
            password: read(&names.password_env, "a password")?,
            per_user: names
                .file
                .as_ref()
                .map(|f| read_file(f).map(Arc::new))
                .transpose()?,
        })
    }

    fn row(&self, user: u32) -> Option<&UserSecrets> {
        self.per_user.as_ref()?.get(&user)
    }

    /// `user`'s token: its row's, or the environment's.
    pub fn token_of(&self, user: u32) -> &Option<Secret> {
        match self.row(user) {
            Some(r) if r.token.is_some() => &r.token,
            _ => &self.token,
        }
    }

    pub fn username_of(&self, user: u32) -> &Option<Secret> {
        match self.row(user) {
            Some(r) if r.username.is_some() => &r.username,
            _ => &self.username,
        }
    }

    pub fn password_of(&self, user: u32) -> &Option<Secret> {
        match self.row(user) {
            Some(r) if r.password.is_some() => &r.password,
            _ => &self.password,
        }
    }
}

/// Reads a credentials file: a header naming columns among `user`, `username`, `password`
/// and `token`, then one row per user (numbered by `user`, or 0, 1, 2, … in order).
fn read_file(path: &std::path::Path) -> Result<HashMap<u32, UserSecrets>, CredentialsError> {
    let shown = path.display().to_string();
    let fail = |message: String| CredentialsError::File {
        path: shown.clone(),
        message,
    };
    let size = std::fs::metadata(path)
        .map_err(|e| fail(format!("cannot read the credentials file ({e})")))?
        .len();
    if size > MAX_FILE {
        return Err(fail(format!(
            "the credentials file is {size} bytes; chatload reads at most {MAX_FILE}"
        )));
    }
    let mut reader = csv::ReaderBuilder::new()
        .trim(csv::Trim::All)
        .from_path(path)
        .map_err(|e| fail(format!("cannot read the credentials file ({e})")))?;
    let header = reader
        .headers()
        .map_err(|e| fail(format!("line 1: {e}")))?
        .clone();
    let mut columns = [None; 4];
    for (i, name) in header.iter().enumerate() {
        let slot = match name.to_ascii_lowercase().as_str() {
            "user" => 0,
            "username" => 1,
            "password" => 2,
            "token" => 3,
            other => {
                return Err(fail(format!(
                    "line 1: unknown column `{other}`; use user, username, password and token"
                )));
            }
        };
        columns[slot] = Some(i);
    }
    if columns[1..].iter().all(Option::is_none) {
        return Err(fail(
            "line 1: name at least one of the columns username, password, token".into(),
        ));
    }
    let mut rows = HashMap::new();
    let mut values: Vec<String> = Vec::new();
    for (n, record) in reader.records().enumerate() {
        let line = n + 2;
        let record = record.map_err(|e| fail(format!("line {line}: {e}")))?;
        let cell = |slot: usize| -> Result<Option<String>, CredentialsError> {
            match columns[slot].and_then(|i| record.get(i)) {
                Some(v) if v.len() > MAX_CELL => Err(fail(format!(
                    "line {line}: a cell of {} bytes; chatload reads at most {MAX_CELL}",
                    v.len()
                ))),
                Some(v) if !v.is_empty() => Ok(Some(v.to_string())),
                _ => Ok(None),
            }
        };
        let user = match cell(0)? {
            Some(u) => u.parse::<u32>().map_err(|_| {
                fail(format!(
                    "line {line}: `{u}` is not a user number (0, 1, 2, …)"
                ))
            })?,
            None if columns[0].is_some() => {
                return Err(fail(format!("line {line}: the user number is empty")));
            }
            None => u32::try_from(n).map_err(|_| fail(format!("line {line}: too many rows")))?,
        };
        let (username, password, token) = (cell(1)?, cell(2)?, cell(3)?);
        values.extend(password.iter().chain(token.iter()).cloned());
        if let (Some(u), Some(p)) = (&username, &password) {
            values.push(format!("{u}:{p}"));
        }
        let row = UserSecrets {
            token: token.map(Secret),
            username: username.map(Secret),
            password: password.map(Secret),
        };
        if rows.insert(user, row).is_some() {
            return Err(fail(format!("line {line}: user {user} has a row already")));
        }
    }
    // Passwords and tokens (and Basic pairs) are hidden; user names are not secrets.
    remember_all(values.iter().map(String::as_str));
    Ok(rows)
}

/// `text` with every known secret value replaced by `***`.
pub fn redact(text: &str) -> String {
    let Ok(known) = KNOWN.read() else {
        return text.to_string();
    };
    let Some(m) = &known.matcher else {
        return text.to_string();
    };
    let mut out = String::with_capacity(text.len());
    m.replace_all_with(text, &mut out, |_, _, dst| {
        dst.push_str("***");
        true
    });
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
    fn a_targets_escape_sequences_reach_no_terminal() {
        let said = "refused\u{1b}[2J\u{1b}[1;1Hlost 0\r\nok \u{7}é";
        let shown = excerpt(said, 200);
        assert!(!shown.chars().any(char::is_control), "{shown:?}");
        assert_eq!(shown, "refused\\u{1b}[2J\\u{1b}[1;1Hlost 0\\r\\nok \\u{7}é");
        assert_eq!(printable("plain text, ünïcode"), "plain text, ünïcode");
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
    fn a_credentials_file_gives_each_user_its_own_and_hides_them() {
        let dir = std::env::temp_dir().join(format!("chatload-creds-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("users.csv");
        std::fs::write(
            &file,
            "user,username,password\n0,alice,pw-alice-0001\n7, bob ,\"pw,bob-0007\"\n",
        )
        .unwrap();
        let names = CredentialNames {
            file: Some(file.clone()),
            ..CredentialNames::default()
        };
        let c = Credentials::from_env(&names).unwrap();
        let shown = |s: &Option<Secret>| s.as_ref().map(|s| s.expose().to_string());
        assert_eq!(shown(c.username_of(7)).as_deref(), Some("bob"));
        assert_eq!(shown(c.password_of(7)).as_deref(), Some("pw,bob-0007"));
        assert_eq!(shown(c.password_of(0)).as_deref(), Some("pw-alice-0001"));
        assert_eq!(
            shown(c.password_of(3)),
            None,
            "no row, no environment value"
        );
        assert_eq!(
            redact("got pw,bob-0007 and pw-alice-0001"),
            "got *** and ***"
        );
        assert_eq!(redact("user bob"), "user bob", "user names are not secrets");

        for (text, says) in [
            ("user,pass\n0,x\n", "line 1: unknown column `pass`"),
            ("user\n0\n", "line 1: name at least one of the columns"),
            (
                "user,password\nseven,pw-x-0001\n",
                "line 2: `seven` is not a user number",
            ),
            (
                "user,password\n1,pw-a-0001\n1,pw-b-0001\n",
                "line 3: user 1 has a row already",
            ),
        ] {
            std::fs::write(&file, text).unwrap();
            let e = Credentials::from_env(&names).unwrap_err().to_string();
            assert!(e.contains(says) && e.contains("users.csv"), "{text:?}: {e}");
        }
        let _ = std::fs::remove_dir_all(&dir);
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
