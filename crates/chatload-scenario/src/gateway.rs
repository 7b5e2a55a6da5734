//! `[target.gateway]`: a WebSocket chat gateway described by its frames — the upgrade's
//! headers and subprotocols, the log-in, join and send templates, and how received frames
//! are recognised. The file form and its compiled form; driving a session is the
//! transport's.

use super::compile::{Result, issue};
use super::target::{MatchSection, Receive, ReceiveSection, matcher, optional, receive, template};
use crate::template::{Matcher, Template};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use toml::Spanned;

#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct GatewaySection {
    /// Frames are sent as binary instead of text (default false).
    pub binary: Option<bool>,
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
pub struct GatewayTarget {
    pub binary: bool,
    /// Headers of the WebSocket upgrade, rendered per user.
    pub headers: Vec<(String, Template)>,
    /// Subprotocols offered on the upgrade, in order of preference.
    pub subprotocols: Vec<String>,
    pub hello: Option<Template>,
    pub ready: Option<Matcher>,
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
        headers.push((k.clone(), template(v)?));
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
    Ok(GatewayTarget {
        binary: g.binary.unwrap_or(false),
        headers,
        subprotocols,
        hello: optional(&g.hello)?,
        ready: g.ready.as_ref().map(matcher),
        join: optional(&g.join)?,
        send: template(&g.send)?,
        send_group: optional(&g.send_group)?,
        delivered: optional(&g.delivered)?,
        read: optional(&g.read)?,
        typing: optional(&g.typing)?,
        heartbeat: optional(&g.heartbeat)?,
        message: receive(&g.message),
        accepted: g.accepted.as_ref().map(receive),
        receipt: g.receipt.as_ref().map(receive),
        error: g.error.as_ref().map(matcher),
    })
}
