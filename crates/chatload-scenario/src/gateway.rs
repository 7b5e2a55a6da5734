//! `[target.gateway]`: a WebSocket chat gateway described by its frames — the upgrade's
//! headers and subprotocols, the log-in (one hello, or several send/expect steps with
//! captured values), the join and send templates, and how received frames are recognised:
//! JSON frames by pointers, text or binary frames that are not JSON by patterns. The file
//! form and its compiled form; driving a session is the transport's.

use super::compile::{Result, issue};
use crate::template::{Matcher, Pattern, Template};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use toml::Spanned;

/// How received frames are read.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, schemars::JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum FrameFormat {
    /// JSON: frames are told apart by `pointer`/`equals`, values read at JSON pointers.
    #[default]
    Json,
    /// Anything else (XML, line protocols, binary): frames are told apart by a regular
    /// expression `pattern`, values read from its named groups.
    Text,
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct MatchSection {
    /// JSON pointer into a received frame, e.g. "/type" (format = "json").
    #[schemars(with = "Option<String>")]
    pub pointer: Option<Spanned<String>>,
    /// The value at `pointer` that marks the frame kind.
    #[schemars(with = "Option<serde_json::Value>")]
    pub equals: Option<toml::Value>,
    /// A regular expression the frame matches (format = "text"), e.g. "^MSG "; its named
    /// groups are what `id`, `from` and `group` name. Binary frames are matched as bytes.
    #[schemars(with = "Option<String>")]
    pub pattern: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ReceiveSection {
    /// Which frames these are.
    #[serde(rename = "match")]
    pub matches: MatchSection,
    /// Where chatload's message id is, or a text that holds its `cl:<id>` token: a JSON
    /// pointer, or (format = "text") the name of a group of the pattern.
    pub id: String,
    /// Where the sender is (a number, or a string ending in one).
    pub from: Option<String>,
    /// Where the group of a group message is.
    pub group: Option<String>,
    /// For receipts: frames that are read receipts (the others are delivery receipts).
    pub read: Option<MatchSection>,
}

/// One step of a log-in that takes several round trips.
#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct LoginStepSection {
    /// The frame this step sends (none: it only waits).
    #[schemars(with = "Option<String>")]
    pub send: Option<Spanned<String>>,
    /// The frame that completes this step; frames before it are kept for the session.
    pub expect: Option<MatchSection>,
    /// Values to keep from the expected frame, by name → JSON pointer (format = "json");
    /// with format = "text" every named group of `expect`'s pattern is kept. Later steps
    /// and every template use them as `{{captured.name}}`.
    #[serde(default)]
    #[schemars(with = "BTreeMap<String, String>")]
    pub capture: BTreeMap<String, Spanned<String>>,
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct GatewaySection {
    /// Frames are sent as binary instead of text (default false). Received frames are read
    /// the same whether text or binary.
    pub binary: Option<bool>,
    /// How received frames are read: "json" (default) or "text" (patterns).
    pub format: Option<FrameFormat>,
    /// Headers sent with the WebSocket upgrade (templates: `{{token}}`, `{{user}}`, ...).
    #[serde(default)]
    #[schemars(with = "BTreeMap<String, String>")]
    pub headers: BTreeMap<String, Spanned<String>>,
    /// Subprotocols offered on the upgrade (`Sec-WebSocket-Protocol`, e.g. ["xmpp"]); the
    /// server must choose one of them.
    #[serde(default)]
    #[schemars(with = "Vec<String>")]
    pub subprotocols: Vec<Spanned<String>>,
    /// Sent right after connecting (log in).
    #[schemars(with = "Option<String>")]
    pub hello: Option<Spanned<String>>,
    /// A log-in of several round trips, in order (instead of `hello` and `ready`).
    #[serde(default)]
    pub login: Vec<LoginStepSection>,
    /// The frame that says the session is ready; without it the session is ready at once.
    pub ready: Option<MatchSection>,
    /// Sent once per group the user belongs to, after `ready`.
    #[schemars(with = "Option<String>")]
    pub join: Option<Spanned<String>>,
    /// A message to one user.
    #[schemars(with = "String")]
    pub send: Spanned<String>,
    /// A message to a group.
    #[schemars(with = "Option<String>")]
    pub send_group: Option<Spanned<String>>,
    /// What a recipient sends when a message arrives, and when it reads one.
    #[schemars(with = "Option<String>")]
    pub delivered: Option<Spanned<String>>,
    #[schemars(with = "Option<String>")]
    pub read: Option<Spanned<String>>,
    #[schemars(with = "Option<String>")]
    pub typing: Option<Spanned<String>>,
    #[schemars(with = "Option<String>")]
    pub heartbeat: Option<Spanned<String>>,
    /// How a delivered message looks.
    pub message: ReceiveSection,
    /// How the gateway confirms a send.
    pub accepted: Option<ReceiveSection>,
    /// How a delivery or read receipt to the sender looks.
    pub receipt: Option<ReceiveSection>,
    /// How an error frame looks.
    pub error: Option<MatchSection>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Receive {
    #[serde(rename = "match")]
    pub matches: Matcher,
    pub id: String,
    pub from: Option<String>,
    pub group: Option<String>,
    pub read: Option<Matcher>,
}

#[derive(Debug, Clone, Serialize)]
pub struct LoginStep {
    pub send: Option<Template>,
    pub expect: Option<Matcher>,
    /// Kept values: their index among `GatewayTarget::captured` and where they are read.
    pub capture: Vec<(u8, String)>,
}

#[derive(Debug, Clone, Serialize)]
pub struct GatewayTarget {
    pub binary: bool,
    pub format: FrameFormat,
    /// The log-in: `hello`/`ready` as one step, or the `login` steps.
    pub login: Vec<LoginStep>,
    /// The names of the values log-in steps capture (`{{captured.name}}`).
    pub captured: Vec<String>,
    /// Headers of the WebSocket upgrade, rendered per user.
    pub headers: Vec<(String, Template)>,
    /// Subprotocols offered on the upgrade, in order of preference.
    pub subprotocols: Vec<String>,
    pub join: Option<Template>,
    pub send: Template,
    pub send_group: Option<Template>,
    pub delivered: Option<Template>,
    pub read: Option<Template>,
    pub typing: Option<Template>,
    pub heartbeat: Option<Template>,
    pub message: Receive,
    pub accepted: Option<Receive>,
    pub receipt: Option<Receive>,
    pub error: Option<Matcher>,
}

/// Headers the WebSocket upgrade itself sets; a scenario may not set them again.
const UPGRADE_HEADERS: [&str; 6] = [
    "host",
    "upgrade",
    "connection",
    "sec-websocket-key",
    "sec-websocket-version",
    "sec-websocket-protocol",
];

/// The largest value a log-in step may capture, in bytes.
pub const MAX_CAPTURED: usize = 4096;
/// The most values log-in steps may capture.
const MAX_CAPTURES: usize = 32;

fn matcher(
    m: &MatchSection,
    format: FrameFormat,
    what: &str,
    near: std::ops::Range<usize>,
) -> Result<Matcher> {
    match (format, &m.pointer, &m.equals, &m.pattern) {
        (FrameFormat::Json, Some(p), Some(e), None) => Ok(Matcher::Pointer {
            pointer: p.get_ref().clone(),
            equals: serde_json::to_value(e).unwrap_or(serde_json::Value::Null),
        }),
        (FrameFormat::Text, None, None, Some(p)) => match Pattern::new(p.get_ref()) {
            Ok(pattern) => Ok(Matcher::Pattern { pattern }),
            Err(e) => issue(
                p.span(),
                format!("{what}: `{}` is not a pattern: {e}", p.get_ref()),
            ),
        },
        (FrameFormat::Json, _, _, Some(p)) => issue(
            p.span(),
            format!(
                "{what}: `pattern` reads frames that are not JSON; set [target.gateway] format = \"text\", or match with `pointer` and `equals`"
            ),
        ),
        (FrameFormat::Text, Some(p), _, _) => issue(
            p.span(),
            format!(
                "{what}: with format = \"text\" frames are matched by `pattern`, not `pointer`"
            ),
        ),
        (FrameFormat::Json, _, _, None) => issue(
            m.pointer.as_ref().map_or(near, |p| p.span()),
            format!("{what} needs `pointer` and `equals` (or `pattern` with format = \"text\")"),
        ),
        (FrameFormat::Text, None, _, None) => issue(near, format!("{what} needs a `pattern`")),
        (FrameFormat::Text, None, Some(_), Some(p)) => issue(
            p.span(),
            format!(
                "{what}: with format = \"text\" the pattern alone tells frames apart; remove `equals`"
            ),
        ),
    }
}

/// A name `receive` reads values by: with patterns, one of the pattern's groups.
fn check_field(m: &Matcher, field: &str, what: &str, near: std::ops::Range<usize>) -> Result<()> {
    if let Matcher::Pattern { pattern } = m
        && !pattern.names().iter().any(|n| n == field)
    {
        return issue(
            near,
            format!(
                "{what}: the pattern has no group named `{field}`; write (?P<{field}>...) in it"
            ),
        );
    }
    Ok(())
}

fn receive(
    r: &ReceiveSection,
    format: FrameFormat,
    what: &str,
    near: std::ops::Range<usize>,
) -> Result<Receive> {
    let matches = matcher(&r.matches, format, what, near.clone())?;
    let near = r.matches.pattern.as_ref().map_or(near, |p| p.span());
    for field in std::iter::once(&r.id).chain(&r.from).chain(&r.group) {
        check_field(&matches, field, what, near.clone())?;
    }
    Ok(Receive {
        matches,
        id: r.id.clone(),
        from: r.from.clone(),
        group: r.group.clone(),
        read: r
            .read
            .as_ref()
            .map(|m| matcher(m, format, &format!("{what}.read"), near.clone()))
            .transpose()?,
    })
}

fn template_with(s: &Spanned<String>, captured: &[String]) -> Result<Template> {
    Template::parse_with(s.get_ref(), captured).or_else(|e| {
        let at = s.span().start + 1 + e.offset;
        issue(at..at + 1, e.message)
    })
}

fn optional_with(s: &Option<Spanned<String>>, captured: &[String]) -> Result<Option<Template>> {
    s.as_ref().map(|s| template_with(s, captured)).transpose()
}

pub(crate) fn compile(g: &GatewaySection) -> Result<GatewayTarget> {
    let mut headers = Vec::new();
    for (k, v) in &g.headers {
        if http::header::HeaderName::from_bytes(k.as_bytes()).is_err() {
            return issue(v.span(), format!("`{k}` is not a valid header name"));
        }
        if UPGRADE_HEADERS.contains(&k.to_ascii_lowercase().as_str()) {
            return issue(
                v.span(),
                format!(
                    "`{k}` is set by the WebSocket upgrade itself; offer subprotocols with `subprotocols = [...]`"
                ),
            );
        }
        // Sent with the upgrade, before any log-in step: no captured value exists yet.
        headers.push((k.clone(), template_with(v, &[])?));
    }
    let mut subprotocols = Vec::new();
    for p in &g.subprotocols {
        let name = p.get_ref();
        let is_token = !name.is_empty()
            && name
                .bytes()
                .all(|b| b.is_ascii_graphic() && !b"()<>@,;:\\\"/[]?={}".contains(&b));
        if !is_token {
            return issue(
                p.span(),
                format!("`{name}` is not a subprotocol name (letters, digits and !#$%&'*+-.^_`|~)"),
            );
        }
        subprotocols.push(name.clone());
    }
    let format = g.format.unwrap_or_default();
    let near = g.send.span();
    // The log-in: each step's captures are known to the steps after it and to every
    // other template.
    let mut captured: Vec<String> = Vec::new();
    let mut login = Vec::new();
    if !g.login.is_empty() && (g.hello.is_some() || g.ready.is_some()) {
        let at = g.hello.as_ref().map_or(near.clone(), |h| h.span());
        return issue(
            at,
            "write the log-in either as `hello` and `ready` or as [[target.gateway.login]] steps, not both",
        );
    }
    if g.hello.is_some() || g.ready.is_some() {
        login.push(LoginStep {
            send: optional_with(&g.hello, &[])?,
            expect: g
                .ready
                .as_ref()
                .map(|m| matcher(m, format, "[target.gateway.ready]", near.clone()))
                .transpose()?,
            capture: Vec::new(),
        });
    }
    for (i, step) in g.login.iter().enumerate() {
        let what = format!("[[target.gateway.login]] step {}", i + 1);
        let send = optional_with(&step.send, &captured)?;
        let expect = step
            .expect
            .as_ref()
            .map(|m| matcher(m, format, &format!("{what}: expect"), near.clone()))
            .transpose()?;
        let mut capture = Vec::new();
        let mut keep = |name: String, field: String, at: std::ops::Range<usize>| {
            if captured.contains(&name) {
                return issue(
                    at,
                    format!("{what} captures `{name}` again; give it another name"),
                );
            }
            if captured.len() == MAX_CAPTURES {
                return issue(
                    at,
                    format!("{what}: at most {MAX_CAPTURES} values may be captured"),
                );
            }
            capture.push((captured.len() as u8, field));
            captured.push(name);
            Ok(())
        };
        match (&expect, format) {
            (Some(Matcher::Pattern { pattern }), _) => {
                if let Some((_, v)) = step.capture.iter().next() {
                    return issue(
                        v.span(),
                        format!(
                            "{what}: with format = \"text\" the named groups of `expect`'s pattern are captured; `capture` is for JSON pointers"
                        ),
                    );
                }
                let at = step
                    .expect
                    .as_ref()
                    .and_then(|m| m.pattern.as_ref())
                    .map_or(near.clone(), |p| p.span());
                for name in pattern.names() {
                    keep(name.clone(), name, at.clone())?;
                }
            }
            (Some(Matcher::Pointer { .. }), _) => {
                for (name, pointer) in &step.capture {
                    if !pointer.get_ref().starts_with('/') {
                        return issue(
                            pointer.span(),
                            format!(
                                "{what}: capture `{name}` = \"{}\" is not a JSON pointer (\"/session/token\")",
                                pointer.get_ref()
                            ),
                        );
                    }
                    keep(name.clone(), pointer.get_ref().clone(), pointer.span())?;
                }
            }
            (None, _) => {
                if let Some((_, v)) = step.capture.iter().next() {
                    return issue(
                        v.span(),
                        format!("{what} captures values but expects no frame to take them from"),
                    );
                }
                if send.is_none() {
                    return issue(
                        near.clone(),
                        format!("{what} neither sends nor expects anything"),
                    );
                }
            }
        }
        login.push(LoginStep {
            send,
            expect,
            capture,
        });
    }
    let t = |s: &Spanned<String>| template_with(s, &captured);
    let o = |s: &Option<Spanned<String>>| optional_with(s, &captured);
    Ok(GatewayTarget {
        binary: g.binary.unwrap_or(false),
        format,
        headers,
        subprotocols,
        join: o(&g.join)?,
        send: t(&g.send)?,
        send_group: o(&g.send_group)?,
        delivered: o(&g.delivered)?,
        read: o(&g.read)?,
        typing: o(&g.typing)?,
        heartbeat: o(&g.heartbeat)?,
        message: receive(&g.message, format, "[target.gateway.message]", near.clone())?,
        accepted: g
            .accepted
            .as_ref()
            .map(|r| receive(r, format, "[target.gateway.accepted]", near.clone()))
            .transpose()?,
        receipt: g
            .receipt
            .as_ref()
            .map(|r| receive(r, format, "[target.gateway.receipt]", near.clone()))
            .transpose()?,
        error: g
            .error
            .as_ref()
            .map(|m| matcher(m, format, "[target.gateway.error]", near.clone()))
            .transpose()?,
        login,
        captured,
    })
}
