//! `[target.http.signals]`: the requests a recipient makes for its signals — a delivery
//! ack, a read receipt, a typing indicator — when an HTTP API takes them as requests of
//! their own. The file form and its compiled form; sending them is the transport's.

use super::compile::{Result, issue};
use super::target::{optional, template};
use crate::template::Template;
use serde::{Deserialize, Serialize};
use toml::Spanned;

#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SignalsSection {
    /// Sent by a recipient for every message it receives (`{{id}}`, `{{from}}`: its sender).
    pub delivered: Option<SignalRequestSection>,
    /// Sent when a recipient reads a message (`{{id}}`, `{{from}}`: its sender).
    pub read: Option<SignalRequestSection>,
    /// Sent when a user types to another (`{{to}}`).
    pub typing: Option<SignalRequestSection>,
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SignalRequestSection {
    /// Default "POST".
    #[schemars(with = "Option<String>")]
    pub method: Option<Spanned<String>>,
    /// A path ("/v1/…", joined to the target URL) or a whole URL.
    #[schemars(with = "String")]
    pub url: Spanned<String>,
    /// The JSON body template.
    #[schemars(with = "Option<String>")]
    pub body: Option<Spanned<String>>,
}

/// One signal's request. Slots: `{{user}}` the user who signals, `{{from}}` the sender of
/// the message it is about, `{{to}}` whom the signal is for, `{{id}}` the message.
#[derive(Debug, Clone, Serialize)]
pub struct SignalRequest {
    pub method: String,
    pub url: Template,
    pub body: Option<Template>,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct HttpSignals {
    pub delivered: Option<SignalRequest>,
    pub read: Option<SignalRequest>,
    pub typing: Option<SignalRequest>,
}

impl HttpSignals {
    pub fn is_empty(&self) -> bool {
        self.delivered.is_none() && self.read.is_none() && self.typing.is_none()
    }
}

fn request(r: &SignalRequestSection) -> Result<SignalRequest> {
    let method = match &r.method {
        None => "POST".to_string(),
        Some(m) if http::Method::from_bytes(m.get_ref().as_bytes()).is_ok() => m.get_ref().clone(),
        Some(m) => return issue(m.span(), format!("`{}` is not an HTTP method", m.get_ref())),
    };
    Ok(SignalRequest {
        method,
        url: template(&r.url)?,
        body: optional(&r.body)?,
    })
}

pub(crate) fn compile(s: &SignalsSection) -> Result<HttpSignals> {
    Ok(HttpSignals {
        delivered: s.delivered.as_ref().map(request).transpose()?,
        read: s.read.as_ref().map(request).transpose()?,
        typing: s.typing.as_ref().map(request).transpose()?,
    })
}
