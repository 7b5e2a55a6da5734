//! The protocol half of `[target]`: which protocol the target speaks (chatload's own, MQTT,
//! a WebSocket chat gateway described by templates, an HTTP messaging API), its settings, TLS
//! trust and where credentials come from. Owns those file sections, their checks and their
//! compiled form, except `[target.gateway]` (`gateway`) and `[target.http.webhook]`
//! (`webhook`), which have files of their own; the server-fault knobs of `[target]` stay in
//! `compile`.

use super::compile::{Result, issue};
pub use super::gateway::{
    FrameFormat, GatewaySection, GatewayTarget, LoginStep, MatchSection, Receive, ReceiveSection,
};
use super::units::Micros;
pub use super::webhook::{TransactionId, Webhook, WebhookSection};
pub use super::xmpp::{Mechanism, XmppSection, XmppTarget, XmppTls};
use crate::secrets::CredentialNames;
use crate::template::Template;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use toml::Spanned;

// ---- the file ----

#[derive(Debug, Default, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AuthSection {
    /// Environment variable holding a token (`{{token}}` in templates; MQTT password if no `password_env`).
    pub token_env: Option<String>,
    pub username_env: Option<String>,
    pub password_env: Option<String>,
    /// A CSV file of per-user credentials (a path from where chatload runs): a header naming
    /// columns among user, username, password and token, then one row per user (the `user`
    /// column gives chatload's user number; without it rows are users 0, 1, 2, …). A user's
    /// cells fill {{username}}, {{password}} and {{token}}; empty cells and users without a row
    /// take the environment's values.
    pub credentials_file: Option<String>,
}

#[derive(Debug, Default, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct MqttSection {
    /// "3.1.1" (default) or "5".
    #[schemars(with = "Option<String>")]
    pub version: Option<Spanned<String>>,
    /// 0 or 1 (default 1) for messages; signals go at QoS 0.
    #[schemars(with = "Option<i64>")]
    pub qos: Option<Spanned<i64>>,
    /// Each user's own topic (default "chatload/u/{{user}}").
    #[schemars(with = "Option<String>")]
    pub user_topic: Option<Spanned<String>>,
    /// Each group's topic (default "chatload/g/{{group}}").
    #[schemars(with = "Option<String>")]
    pub group_topic: Option<Spanned<String>>,
    /// Client id (default "chatload-{{user}}").
    #[schemars(with = "Option<String>")]
    pub client_id: Option<Spanned<String>>,
    pub keep_alive: Option<Micros>,
    /// Default false: the broker keeps each user's subscriptions and queued messages while
    /// it is offline, as a messaging app's session does.
    pub clean_session: Option<bool>,
    /// Recipients publish a delivery receipt to the sender's topic (default false).
    pub receipts: Option<bool>,
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct HttpSection {
    /// Default "POST".
    pub method: Option<String>,
    /// The send URL; a path ("/v1/…") is joined to the target URL.
    #[schemars(with = "String")]
    pub url: Spanned<String>,
    #[serde(default)]
    #[schemars(with = "BTreeMap<String, String>")]
    pub headers: BTreeMap<String, Spanned<String>>,
    /// The JSON body template.
    #[schemars(with = "Option<String>")]
    pub body: Option<Spanned<String>>,
    /// The send URL of a group message, when it differs from a direct one's (default `url`).
    #[schemars(with = "Option<String>")]
    pub group_url: Option<Spanned<String>>,
    /// The body of a group message, when it differs from a direct one's (default `body`).
    #[schemars(with = "Option<String>")]
    pub group_body: Option<Spanned<String>>,
    /// Environment variables holding the receive side's credentials (the subscription's),
    /// when they differ from the send side's `[target.auth]`.
    pub subscribe_auth: Option<AuthSection>,
    /// JSON pointer to the message id in the response (kept for the report's examples).
    pub id: Option<String>,
    /// How long a send may take (default 10s).
    pub timeout: Option<Micros>,
    /// The largest answer read, in bytes (default 65536): an answer longer than this is a
    /// protocol error, so a target cannot make chatload hold an unbounded body.
    #[schemars(with = "Option<i64>")]
    pub max_answer: Option<Spanned<i64>>,
    /// How deliveries are seen: "subscription" (default), "webhook", or "none" (a plain
    /// request/response API: the answer is the whole story).
    #[schemars(with = "Option<String>")]
    pub deliveries: Option<Spanned<String>>,
    /// For subscriptions: the URL to subscribe at (default: the embedded server's WebSocket).
    #[schemars(with = "Option<String>")]
    pub subscribe: Option<Spanned<String>>,
    /// For webhooks: where chatload listens (default "127.0.0.1:0") and how a delivery looks.
    pub webhook: Option<WebhookSection>,
    /// Requests of their own for delivery acks, read receipts and typing (without one, a
    /// signal goes where deliveries come from).
    pub signals: Option<super::http_signals::SignalsSection>,
    /// A JSON file mapping user and group numbers to the system's own ids (Matrix user and
    /// room ids, channel ids), as `chatload setup matrix` writes it; templates use them as
    /// {{user_id}}, {{to_id}}, {{group_id}} and {{chat_id}}.
    pub ids: Option<String>,
}

// ---- the compiled form ----

/// What the target speaks.
#[derive(Debug, Clone, Default, Serialize)]
#[serde(tag = "protocol", content = "settings", rename_all = "snake_case")]
pub enum Protocol {
    #[default]
    Chatload,
    Mqtt(Arc<MqttTarget>),
    WsGateway(Arc<GatewayTarget>),
    Http(Arc<HttpTarget>),
    /// XMPP over TCP (xmpp://, STARTTLS when offered) or WebSocket (ws://, wss://; RFC 7395).
    Xmpp(Arc<XmppTarget>),
}

impl Protocol {
    /// Whether `url`'s scheme is one this protocol is reached by.
    pub fn fits_url(&self, url: &str) -> bool {
        let scheme = url.trim().split("://").next().unwrap_or("");
        match self {
            Protocol::Chatload | Protocol::WsGateway(_) => matches!(scheme, "ws" | "wss"),
            Protocol::Mqtt(_) => matches!(scheme, "mqtt" | "mqtts" | "tcp" | "ssl"),
            Protocol::Http(_) => matches!(scheme, "http" | "https"),
            // Over TCP, or over WebSocket (RFC 7395).
            Protocol::Xmpp(_) => matches!(scheme, "xmpp" | "ws" | "wss"),
        }
    }

    pub fn name(&self) -> &'static str {
        match self {
            Protocol::Chatload => "chatload",
            Protocol::Mqtt(_) => "mqtt",
            Protocol::WsGateway(_) => "ws-gateway",
            Protocol::Http(_) => "http",
            Protocol::Xmpp(_) => "xmpp",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum MqttVersion {
    #[serde(rename = "3.1.1")]
    V311,
    #[serde(rename = "5")]
    V5,
}

#[derive(Debug, Clone, Serialize)]
pub struct MqttTarget {
    pub version: MqttVersion,
    pub qos: u8,
    pub user_topic: Template,
    pub group_topic: Template,
    pub client_id: Template,
    pub keep_alive: Micros,
    pub clean_session: bool,
    pub receipts: bool,
}

#[derive(Debug, Clone, Serialize)]
pub enum HttpDeliveries {
    /// Each user subscribes at this URL (None: the embedded server), speaking this protocol.
    Subscription {
        url: Option<String>,
        protocol: Box<Protocol>,
    },
    Webhook(Box<Webhook>),
    /// Nothing is delivered to anyone: the 2xx answer confirms the message, and no recipient
    /// is owed it (benchmarks of a request/response endpoint).
    None,
}

#[derive(Debug, Clone, Serialize)]
pub struct HttpTarget {
    pub method: String,
    pub url: Template,
    pub headers: Vec<(String, Template)>,
    pub body: Option<Template>,
    /// A group message's URL and body, when they differ from a direct one's.
    pub group_url: Option<Template>,
    pub group_body: Option<Template>,
    /// The subscription's own credentials (None: `[target.auth]`'s).
    pub subscribe_credentials: Option<CredentialNames>,
    pub id: Option<String>,
    pub timeout: Micros,
    /// Bytes of an answer read at most (see `HttpSection::max_answer`).
    pub max_answer: usize,
    pub deliveries: HttpDeliveries,
    /// Signals sent as requests of their own (`[target.http.signals]`).
    pub signals: super::http_signals::HttpSignals,
    /// The ids file (`HttpSection::ids`), read before the run.
    pub ids: Option<PathBuf>,
}

impl HttpTarget {
    /// Whether any of its templates names `slot`.
    pub fn uses(&self, slot: crate::template::Slot) -> bool {
        let s = &self.signals;
        [
            Some(&self.url),
            self.body.as_ref(),
            self.group_url.as_ref(),
            self.group_body.as_ref(),
        ]
        .into_iter()
        .flatten()
        .chain(self.headers.iter().map(|(_, t)| t))
        .chain(
            [&s.delivered, &s.read, &s.typing]
                .into_iter()
                .flatten()
                .flat_map(|r| std::iter::once(&r.url).chain(&r.body)),
        )
        .any(|t| t.uses(slot))
    }
}

/// `max_answer` when the scenario does not say, and the largest it may say.
pub const DEFAULT_MAX_ANSWER: usize = 64 << 10;
pub const LARGEST_MAX_ANSWER: i64 = 64 << 20;

/// The protocol settings of one `[target]`.
pub struct Compiled {
    pub protocol: Protocol,
    pub ca_file: Option<PathBuf>,
    pub credentials: CredentialNames,
}

/// Sections of `[target]` this module reads.
pub struct Sections<'a> {
    pub url: Option<&'a Spanned<String>>,
    pub protocol: Option<&'a Spanned<String>>,
    pub ca_file: Option<&'a String>,
    pub auth: Option<&'a AuthSection>,
    pub mqtt: Option<&'a MqttSection>,
    pub gateway: Option<&'a GatewaySection>,
    pub http: Option<&'a HttpSection>,
    pub xmpp: Option<&'a XmppSection>,
    /// The whole `[target]` table, for errors about a missing section.
    pub span: std::ops::Range<usize>,
}

pub(crate) fn template(s: &Spanned<String>) -> Result<Template> {
    Template::parse(s.get_ref()).or_else(|e| {
        let at = s.span().start + 1 + e.offset;
        issue(at..at + 1, e.message)
    })
}

pub(crate) fn optional(s: &Option<Spanned<String>>) -> Result<Option<Template>> {
    s.as_ref().map(template).transpose()
}

fn default_template(s: &Option<Spanned<String>>, default: &str) -> Result<Template> {
    match s {
        Some(s) => template(s),
        None => Template::parse(default).or_else(|e| issue(0..0, e.message)),
    }
}

/// The protocol a URL's scheme implies when `protocol` is not written.
fn protocol_of_url(url: &str) -> Option<&'static str> {
    let scheme = url.split("://").next()?;
    Some(match scheme {
        "ws" | "wss" => "chatload",
        "mqtt" | "mqtts" | "tcp" | "ssl" => "mqtt",
        "http" | "https" => "http",
        "xmpp" => "xmpp",
        _ => return None,
    })
}

pub fn compile(s: Sections<'_>) -> Result<Compiled> {
    let url = s.url.map(|u| u.get_ref().trim());
    let name = match (s.protocol, url) {
        (Some(p), _) => p.get_ref().trim().to_string(),
        (None, Some(u)) => match protocol_of_url(u) {
            Some(p) => p.to_string(),
            None => {
                let span = s.url.map_or(s.span.clone(), |u| u.span());
                return issue(
                    span,
                    format!(
                        "`{u}` has no scheme chatload speaks: use ws://, wss://, mqtt://, mqtts://, http://, https:// or xmpp://"
                    ),
                );
            }
        },
        (None, None) => "chatload".to_string(),
    };
    let at = s.protocol.or(s.url).map_or(s.span.clone(), |p| p.span());
    let protocol = match name.as_str() {
        "chatload" => Protocol::Chatload,
        "mqtt" => Protocol::Mqtt(Arc::new(mqtt(s.mqtt)?)),
        "xmpp" => Protocol::Xmpp(Arc::new(super::xmpp::compile(
            s.xmpp,
            s.auth.is_some_and(|a| a.password_env.is_some()),
        )?)),
        "ws-gateway" => match s.gateway {
            Some(g) => Protocol::WsGateway(Arc::new(super::gateway::compile(g)?)),
            None => {
                return issue(
                    at,
                    "protocol \"ws-gateway\" needs a [target.gateway] table describing the frames (see scenarios/ws-gateway.toml)",
                );
            }
        },
        "http" => match s.http {
            Some(h) => Protocol::Http(Arc::new(http(h, &s)?)),
            None => {
                return issue(
                    at,
                    "protocol \"http\" needs a [target.http] table describing the send request (see scenarios/http-api.toml)",
                );
            }
        },
        other => {
            return issue(
                at,
                format!(
                    "unknown protocol `{other}`: use \"chatload\", \"mqtt\", \"ws-gateway\", \"http\" or \"xmpp\""
                ),
            );
        }
    };
    if let (Some(u), Some(url)) = (s.url, url)
        && !protocol.fits_url(url)
    {
        let example = match &protocol {
            Protocol::Chatload => "\"ws://127.0.0.1:7070/v1/ws\"",
            Protocol::WsGateway(_) => "\"ws://127.0.0.1:9000/chat\"",
            Protocol::Mqtt(_) => "\"mqtt://127.0.0.1:1883\"",
            Protocol::Http(_) => "\"http://127.0.0.1:8080\"",
            Protocol::Xmpp(_) => {
                "\"xmpp://127.0.0.1:5222\" or \"ws://127.0.0.1:5280/xmpp-websocket\""
            }
        };
        return issue(
            u.span(),
            format!(
                "`{url}` does not fit protocol \"{}\": write e.g. {example}",
                protocol.name()
            ),
        );
    }
    if url.is_none()
        && matches!(
            protocol,
            Protocol::Mqtt(_) | Protocol::WsGateway(_) | Protocol::Xmpp(_)
        )
    {
        return issue(
            at,
            format!(
                "protocol \"{}\" needs the target's `url` (the embedded server speaks chatload's protocol and HTTP only)",
                protocol.name()
            ),
        );
    }
    let auth = s.auth;
    Ok(Compiled {
        protocol,
        ca_file: s.ca_file.map(PathBuf::from),
        credentials: CredentialNames {
            token_env: auth.and_then(|a| a.token_env.clone()),
            username_env: auth.and_then(|a| a.username_env.clone()),
            password_env: auth.and_then(|a| a.password_env.clone()),
            file: auth
                .and_then(|a| a.credentials_file.as_ref())
                .map(PathBuf::from),
        },
    })
}

fn mqtt(m: Option<&MqttSection>) -> Result<MqttTarget> {
    let empty = MqttSection::default();
    let m = m.unwrap_or(&empty);
    let version = match &m.version {
        None => MqttVersion::V311,
        Some(v) => match v.get_ref().trim() {
            "3.1.1" | "3" | "4" => MqttVersion::V311,
            "5" | "5.0" => MqttVersion::V5,
            other => {
                return issue(
                    v.span(),
                    format!("unknown MQTT version `{other}`: use \"3.1.1\" or \"5\""),
                );
            }
        },
    };
    let qos = match &m.qos {
        None => 1,
        Some(q) if matches!(*q.get_ref(), 0 | 1) => *q.get_ref() as u8,
        Some(q) => {
            return issue(
                q.span(),
                format!(
                    "qos {} is not supported: use 0 (at most once) or 1 (at least once)",
                    q.get_ref()
                ),
            );
        }
    };
    let user_topic = default_template(&m.user_topic, "chatload/u/{{user}}")?;
    if !user_topic.uses(crate::template::Slot::User) {
        let span = m.user_topic.as_ref().map_or(0..0, |t| t.span());
        return issue(
            span,
            "`user_topic` must contain {{user}}: each user needs a topic of its own",
        );
    }
    let group_topic = default_template(&m.group_topic, "chatload/g/{{group}}")?;
    let client_id = default_template(&m.client_id, "chatload-{{user}}")?;
    Ok(MqttTarget {
        version,
        qos,
        user_topic,
        group_topic,
        client_id,
        keep_alive: m.keep_alive.unwrap_or(Micros(30_000_000)),
        clean_session: m.clean_session.unwrap_or(false),
        receipts: m.receipts.unwrap_or(false),
    })
}

fn http(h: &HttpSection, s: &Sections<'_>) -> Result<HttpTarget> {
    let method = h.method.clone().unwrap_or_else(|| "POST".into());
    if http::Method::from_bytes(method.as_bytes()).is_err() {
        return issue(h.url.span(), format!("`{method}` is not an HTTP method"));
    }
    let mut headers = Vec::new();
    for (k, v) in &h.headers {
        if http::header::HeaderName::from_bytes(k.as_bytes()).is_err() {
            return issue(v.span(), format!("`{k}` is not a valid header name"));
        }
        headers.push((k.clone(), template(v)?));
    }
    let kind = h
        .deliveries
        .as_ref()
        .map_or("subscription", |d| d.get_ref().as_str());
    let deliveries = match kind {
        "subscription" => {
            let url = h.subscribe.as_ref().map(|u| u.get_ref().trim().to_string());
            let protocol = match url.as_deref().and_then(protocol_of_url) {
                Some("mqtt") => Protocol::Mqtt(Arc::new(mqtt(s.mqtt)?)),
                _ => match s.gateway {
                    Some(g) => Protocol::WsGateway(Arc::new(super::gateway::compile(g)?)),
                    None => Protocol::Chatload,
                },
            };
            if let Some(u) = &h.subscribe
                && u.get_ref().trim().is_empty()
            {
                return issue(
                    u.span(),
                    "`subscribe` is empty: give a ws:// or mqtt:// URL",
                );
            }
            HttpDeliveries::Subscription {
                url,
                protocol: Box::new(protocol),
            }
        }
        "webhook" => match &h.webhook {
            Some(w) => HttpDeliveries::Webhook(Box::new(super::webhook::compile(w)?)),
            None => {
                let span = h.deliveries.as_ref().map_or(0..0, |d| d.span());
                return issue(
                    span,
                    "deliveries = \"webhook\" needs a [target.http.webhook] table (recipient and id pointers)",
                );
            }
        },
        "none" => HttpDeliveries::None,
        other => {
            let span = h.deliveries.as_ref().map_or(0..0, |d| d.span());
            return issue(
                span,
                format!(
                    "unknown deliveries `{other}`: use \"subscription\", \"webhook\" or \"none\""
                ),
            );
        }
    };
    let max_answer = match &h.max_answer {
        None => DEFAULT_MAX_ANSWER,
        Some(v) if (256..=LARGEST_MAX_ANSWER).contains(v.get_ref()) => *v.get_ref() as usize,
        Some(v) => {
            return issue(
                v.span(),
                format!(
                    "max_answer = {} bytes: give 256 to {LARGEST_MAX_ANSWER} (64 MiB); it bounds the memory each connection may spend on one answer",
                    v.get_ref()
                ),
            );
        }
    };
    Ok(HttpTarget {
        method,
        url: template(&h.url)?,
        headers,
        body: optional(&h.body)?,
        group_url: optional(&h.group_url)?,
        group_body: optional(&h.group_body)?,
        subscribe_credentials: h.subscribe_auth.as_ref().map(|a| CredentialNames {
            token_env: a.token_env.clone(),
            username_env: a.username_env.clone(),
            password_env: a.password_env.clone(),
            file: a.credentials_file.as_ref().map(PathBuf::from),
        }),
        id: h.id.clone(),
        timeout: h.timeout.unwrap_or(Micros(10_000_000)),
        max_answer,
        deliveries,
        signals: h
            .signals
            .as_ref()
            .map(super::http_signals::compile)
            .transpose()?
            .unwrap_or_default(),
        ids: h.ids.as_ref().map(PathBuf::from),
    })
}
