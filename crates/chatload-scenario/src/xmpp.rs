//! `[target.xmpp]`: how chatload's users appear on an XMPP server — their JIDs and
//! passwords (templates per user), whether accounts are created for the run (in-band
//! registration, XEP-0077), which SASL mechanisms and TLS are acceptable, the MUC service
//! that holds the groups' rooms, and which extensions are used. Owns that section, its
//! checks and its compiled form; speaking XMPP is the transport's.

use super::compile::{Result, issue};
use super::target::template;
use crate::template::{Slot, Template};
use serde::{Deserialize, Serialize};
use toml::Spanned;

#[derive(Debug, Default, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct XmppSection {
    /// The server's domain, the part after @ (default: the URL's host).
    pub domain: Option<String>,
    /// Each user's local part (default "u{{user}}"); it must contain {{user}}.
    #[schemars(with = "Option<String>")]
    pub username: Option<Spanned<String>>,
    /// Each user's password (default "{{password}}" when [target.auth] names a password
    /// variable, otherwise "chatload-{{user}}").
    #[schemars(with = "Option<String>")]
    pub password: Option<Spanned<String>>,
    /// The resource bound (default "chatload").
    pub resource: Option<String>,
    /// Create every account of the run by in-band registration (XEP-0077) before any
    /// traffic; an account that exists is used as it is (default false).
    pub register: Option<bool>,
    /// SASL mechanisms chatload may use, best first (default SCRAM-SHA-256, SCRAM-SHA-1,
    /// PLAIN). PLAIN is used on an unencrypted stream only when `tls = "never"`.
    #[schemars(with = "Option<Vec<String>>")]
    pub mechanisms: Option<Spanned<Vec<String>>>,
    /// "when-offered" (default: STARTTLS if the server offers it), "required" or "never".
    #[schemars(with = "Option<String>")]
    pub tls: Option<Spanned<String>>,
    /// The MUC service whose rooms are the groups (default "conference.<domain>").
    pub muc: Option<String>,
    /// Each group's room name (default "g{{group}}"); it must contain {{group}}.
    #[schemars(with = "Option<String>")]
    pub room: Option<Spanned<String>>,
    /// Ask for delivery receipts (XEP-0184) and answer them (default true).
    pub receipts: Option<bool>,
    /// Stream management (XEP-0198): the server's acks confirm each message (default true,
    /// used when the server offers it).
    pub stream_management: Option<bool>,
}

/// SASL mechanisms chatload speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Mechanism {
    ScramSha256,
    ScramSha1,
    Plain,
}

impl Mechanism {
    pub fn name(self) -> &'static str {
        match self {
            Mechanism::ScramSha256 => "SCRAM-SHA-256",
            Mechanism::ScramSha1 => "SCRAM-SHA-1",
            Mechanism::Plain => "PLAIN",
        }
    }

    fn from_name(name: &str) -> Option<Self> {
        [
            Mechanism::ScramSha256,
            Mechanism::ScramSha1,
            Mechanism::Plain,
        ]
        .into_iter()
        .find(|m| m.name().eq_ignore_ascii_case(name.trim()))
    }
}

/// When the stream is encrypted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum XmppTls {
    WhenOffered,
    Required,
    Never,
}

/// The compiled `[target.xmpp]`.
#[derive(Debug, Clone, Serialize)]
pub struct XmppTarget {
    /// None: the URL's host.
    pub domain: Option<String>,
    pub username: Template,
    pub password: Template,
    pub resource: String,
    pub register: bool,
    pub mechanisms: Vec<Mechanism>,
    pub tls: XmppTls,
    /// None: "conference.<domain>".
    pub muc: Option<String>,
    pub room: Template,
    pub receipts: bool,
    pub stream_management: bool,
}

fn fixed(text: &str) -> Result<Template> {
    Template::parse(text).or_else(|e| issue(0..0, e.message))
}

/// `password_env` says whether [target.auth] names a password variable.
pub fn compile(x: Option<&XmppSection>, password_env: bool) -> Result<XmppTarget> {
    let empty = XmppSection::default();
    let x = x.unwrap_or(&empty);
    let username = match &x.username {
        Some(u) => {
            let t = template(u)?;
            if !t.uses(Slot::User) {
                return issue(
                    u.span(),
                    "`username` must contain {{user}}: each user needs an account of its own",
                );
            }
            t
        }
        None => fixed("u{{user}}")?,
    };
    let password = match &x.password {
        Some(p) => template(p)?,
        None if password_env => fixed("{{password}}")?,
        None => fixed("chatload-{{user}}")?,
    };
    let room = match &x.room {
        Some(r) => {
            let t = template(r)?;
            if !t.uses(Slot::Group) {
                return issue(
                    r.span(),
                    "`room` must contain {{group}}: each group needs a room of its own",
                );
            }
            t
        }
        None => fixed("g{{group}}")?,
    };
    let mechanisms = match &x.mechanisms {
        None => vec![
            Mechanism::ScramSha256,
            Mechanism::ScramSha1,
            Mechanism::Plain,
        ],
        Some(list) => {
            let mut out = Vec::new();
            for name in list.get_ref() {
                match Mechanism::from_name(name) {
                    Some(m) if !out.contains(&m) => out.push(m),
                    Some(_) => {}
                    None => {
                        return issue(
                            list.span(),
                            format!(
                                "unknown SASL mechanism `{name}`: use \"SCRAM-SHA-256\", \"SCRAM-SHA-1\" or \"PLAIN\""
                            ),
                        );
                    }
                }
            }
            if out.is_empty() {
                return issue(list.span(), "`mechanisms` is empty: name at least one");
            }
            out
        }
    };
    let tls = match &x.tls {
        None => XmppTls::WhenOffered,
        Some(t) => match t.get_ref().trim() {
            "when-offered" => XmppTls::WhenOffered,
            "required" => XmppTls::Required,
            "never" => XmppTls::Never,
            other => {
                return issue(
                    t.span(),
                    format!(
                        "unknown tls `{other}`: use \"when-offered\", \"required\" or \"never\""
                    ),
                );
            }
        },
    };
    Ok(XmppTarget {
        domain: x.domain.clone(),
        username,
        password,
        resource: x.resource.clone().unwrap_or_else(|| "chatload".into()),
        register: x.register.unwrap_or(false),
        mechanisms,
        tls,
        muc: x.muc.clone(),
        room,
        receipts: x.receipts.unwrap_or(true),
        stream_management: x.stream_management.unwrap_or(true),
    })
}
