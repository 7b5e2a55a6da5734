//! Opening an XMPP stream for one user (RFC 6120): stream header, STARTTLS when offered or
//! required, SASL, stream restart, resource binding, stream management (XEP-0198), initial
//! presence and joining the user's group rooms (XEP-0045); and creating an account by
//! in-band registration (XEP-0077). Owns the log-in's round trips and the one sentence
//! that says which step a server refused; not the traffic after it (`session`).

use super::sasl::{self, Scram};
use super::steps::{Step, Steps};
use super::xml::{self, Element, Frame, esc};
use super::{Conn, Resumption, XmppSetup, ns};
use crate::metrics::ErrorKind;
use crate::transport::ConnectError;
use crate::transport::byte_stream::ByteStream;
use bytes::{Buf, BytesMut};
use chatload_scenario::target::{Mechanism, XmppTls};
use std::collections::VecDeque;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A stream being negotiated: the connection and what was read but not used yet.
pub struct Wire {
    pub conn: Conn,
    pub buf: BytesMut,
    /// Stanzas read (XEP-0198 counts them from `<enabled/>` on).
    pub stanzas_in: u32,
}

fn protocol(detail: impl Into<String>) -> ConnectError {
    ConnectError::new(ErrorKind::Protocol, detail)
}

fn refused(detail: impl Into<String>) -> ConnectError {
    ConnectError::new(ErrorKind::ServerError, detail)
}

/// The condition of a `<stream:error>` or stanza `<error>`, with its text when given.
pub fn condition(error: &Element) -> String {
    let name = error
        .children
        .iter()
        .find(|c| c.name != "text")
        .map_or("undefined-condition", |c| c.name.as_str());
    match error.child("text", None).map(|t| t.text.trim()) {
        Some(text) if !text.is_empty() => {
            format!("{name} ({})", crate::secrets::excerpt(text, 160))
        }
        _ => name.to_string(),
    }
}

impl Wire {
    pub async fn send(&mut self, text: &str) -> Result<(), ConnectError> {
        self.conn
            .write_all(text.as_bytes())
            .await
            .map_err(ConnectError::io)?;
        self.conn.flush().await.map_err(ConnectError::io)
    }

    /// The next frame; a `<stream:error>` or the end of the stream is an error here.
    pub async fn frame(&mut self) -> Result<Frame, ConnectError> {
        loop {
            match xml::cut(&self.buf) {
                Ok(Some((frame, used))) => {
                    self.buf.advance(used);
                    return match frame {
                        Frame::Stanza(e) if e.name == "error" && e.ns.is_empty() => Err(refused(
                            format!("ended the stream with an error: {}", condition(&e)),
                        )),
                        Frame::End => Err(ConnectError::new(
                            ErrorKind::ConnectionClosed,
                            "the server closed the XMPP stream",
                        )),
                        f => Ok(f),
                    };
                }
                Ok(None) => {}
                Err(e) => return Err(protocol(e.to_string())),
            }
            self.buf.reserve(4096);
            match self.conn.read_buf(&mut self.buf).await {
                Ok(0) => {
                    return Err(ConnectError::new(
                        ErrorKind::ConnectionClosed,
                        "the server closed the connection",
                    ));
                }
                Ok(_) => {}
                Err(e) => {
                    return Err(ConnectError::new(
                        crate::transport::connector::classify_io(&e),
                        e.to_string(),
                    ));
                }
            }
        }
    }

    pub async fn stanza(&mut self) -> Result<Element, ConnectError> {
        match self.frame().await? {
            Frame::Stanza(e) => {
                if matches!(e.name.as_str(), "message" | "presence" | "iq") {
                    self.stanzas_in = self.stanzas_in.wrapping_add(1);
                }
                Ok(e)
            }
            Frame::Header(_) => Err(protocol("a second stream header")),
            Frame::End => Err(protocol("the end of the stream")),
        }
    }

    /// Opens (or restarts) the stream and returns the server's features.
    async fn open(&mut self, domain: &str, steps: &Steps) -> Result<Element, ConnectError> {
        steps.reached(Step::StreamHeader);
        self.send(&format!(
            "<?xml version='1.0'?><stream:stream to='{}' version='1.0' xmlns='jabber:client' xmlns:stream='{}'>",
            esc(domain),
            ns::STREAM
        ))
        .await?;
        match self.frame().await {
            Ok(Frame::Header(_)) => {}
            Ok(_) => return Err(protocol("it answered the stream header with a stanza")),
            Err(e) if e.kind == ErrorKind::Protocol => {
                let seen = crate::secrets::excerpt(&String::from_utf8_lossy(&self.buf), 60);
                return Err(protocol(format!(
                    "its answer to the stream header is not XMPP ({}; it began `{seen}`)",
                    e.detail
                )));
            }
            Err(e) => return Err(e),
        }
        steps.reached(Step::Features);
        let features = self.stanza().await?;
        if features.name != "features" {
            return Err(protocol(format!(
                "it sent <{}> where stream features belong",
                features.name
            )));
        }
        Ok(features)
    }
}

/// What a finished log-in hands the session.
pub struct LoggedIn {
    pub wire: Wire,
    /// The server acks stanzas (XEP-0198 enabled).
    pub acks: bool,
    /// Stanzas that arrived during the log-in, for the session to read first.
    pub early: VecDeque<Element>,
    /// Stanzas sent since acks were enabled (the room joins and the initial presence).
    pub sent_since_enable: u32,
    /// The id a later stream may resume this one by (XEP-0198), when the server allows it.
    pub resume_id: Option<String>,
    /// The earlier stream this one resumed, and the server's count of our stanzas it had.
    pub resumed: Option<(Resumption, u32)>,
}

async fn starttls(
    setup: &XmppSetup,
    mut wire: Wire,
    domain: &str,
    steps: &Steps,
) -> Result<(Wire, Element), ConnectError> {
    steps.reached(Step::StartTls);
    wire.send(&format!("<starttls xmlns='{}'/>", ns::TLS))
        .await?;
    let answer = wire.stanza().await?;
    if answer.name != "proceed" {
        return Err(refused(format!("refused STARTTLS (<{}>)", answer.name)));
    }
    let Conn::Tcp(ByteStream::Plain(tcp)) = wire.conn else {
        return Err(protocol("STARTTLS offered on an encrypted stream"));
    };
    steps.reached(Step::TlsHandshake);
    let tls = ByteStream::tls(tcp, setup.tls.client_config(), domain).await?;
    let mut wire = Wire {
        conn: Conn::Tcp(tls),
        buf: BytesMut::new(),
        stanzas_in: 0,
    };
    let features = wire.open(domain, steps).await?;
    Ok((wire, features))
}

/// Connects, encrypts as configured and returns the stream with its features.
pub async fn connect(
    setup: &XmppSetup,
    source: Option<std::net::IpAddr>,
    steps: &Steps,
) -> Result<(Wire, Element), ConnectError> {
    if let Some(url) = &setup.websocket {
        let extras = crate::transport::ws_open::Extras {
            headers: Vec::new(),
            subprotocols: vec!["xmpp".into()],
            // One stanza per WebSocket message (RFC 7395); a longer one is refused anyway.
            max_frame: Some(super::xml::MAX_STANZA),
        };
        // The whole log-in has one timeout, its caller's, which says what it waited for.
        let ws =
            crate::transport::ws_open::open_with(url, &setup.tls, source, &extras, &steps.opening)
                .await?;
        let mut wire = Wire {
            conn: Conn::Ws(Box::new(super::framing::WsStream::new(
                ws,
                url.trim_start().starts_with("wss:"),
            ))),
            buf: BytesMut::with_capacity(4096),
            stanzas_in: 0,
        };
        let features = wire.open(&setup.domain, steps).await?;
        return Ok((wire, features));
    }
    let tcp = crate::transport::source::connect(&setup.address, source)
        .await
        .map_err(ConnectError::io)?;
    let tcp = crate::transport::stamped_tcp::StampedTcp::new(tcp).map_err(ConnectError::io)?;
    let mut wire = Wire {
        conn: Conn::Tcp(ByteStream::Plain(tcp)),
        buf: BytesMut::with_capacity(4096),
        stanzas_in: 0,
    };
    let domain = setup.domain.as_str();
    let features = wire.open(domain, steps).await?;
    let offered = features.child("starttls", Some(ns::TLS)).is_some();
    match (setup.target.tls, offered) {
        (XmppTls::Never, _) | (XmppTls::WhenOffered, false) => Ok((wire, features)),
        (_, true) => starttls(setup, wire, domain, steps).await,
        (XmppTls::Required, false) => Err(ConnectError::new(
            ErrorKind::Tls,
            "does not offer STARTTLS and [target.xmpp] tls = \"required\"",
        )),
    }
}

fn encrypted(wire: &Wire) -> bool {
    match &wire.conn {
        Conn::Tcp(s) => s.is_tls(),
        Conn::Ws(w) => w.secure,
    }
}

/// SASL with the best mechanism both sides allow.
async fn authenticate(
    setup: &XmppSetup,
    wire: &mut Wire,
    features: &Element,
    username: &str,
    password: &str,
    steps: &Steps,
) -> Result<(), ConnectError> {
    let offered: Vec<&str> = features
        .child("mechanisms", Some(ns::SASL))
        .map(|m| m.children.iter().map(|c| c.text.trim()).collect())
        .unwrap_or_default();
    let plain_ok = encrypted(wire) || setup.target.tls == XmppTls::Never;
    let Some(mechanism) = setup
        .target
        .mechanisms
        .iter()
        .copied()
        .find(|m| offered.contains(&m.name()) && (*m != Mechanism::Plain || plain_ok))
    else {
        let mine: Vec<&str> = setup.target.mechanisms.iter().map(|m| m.name()).collect();
        let hint = if offered.contains(&"PLAIN") && !plain_ok {
            " (PLAIN over an unencrypted stream needs [target.xmpp] tls = \"never\")"
        } else {
            ""
        };
        return Err(refused(format!(
            "offers the SASL mechanisms [{}] and chatload may use [{}]{hint}",
            offered.join(", "),
            mine.join(", ")
        )));
    };
    let fail = |e: &Element| {
        refused(format!(
            "rejected the SASL {} log-in of `{username}`: {}",
            mechanism.name(),
            condition(e)
        ))
    };
    use base64::Engine as _;
    let b64 = base64::engine::general_purpose::STANDARD;
    steps.reached(Step::Sasl);
    if mechanism == Mechanism::Plain {
        wire.send(&format!(
            "<auth xmlns='{}' mechanism='PLAIN'>{}</auth>",
            ns::SASL,
            sasl::plain(username, password)
        ))
        .await?;
        let answer = wire.stanza().await?;
        return match answer.name.as_str() {
            "success" => Ok(()),
            _ => Err(fail(&answer)),
        };
    }
    let mut scram = Scram::new(mechanism, username, password, Scram::nonce());
    wire.send(&format!(
        "<auth xmlns='{}' mechanism='{}'>{}</auth>",
        ns::SASL,
        mechanism.name(),
        b64.encode(scram.first())
    ))
    .await?;
    let decode = |e: &Element| {
        b64.decode(e.text.trim())
            .ok()
            .and_then(|b| String::from_utf8(b).ok())
            .ok_or_else(|| protocol("a SASL message that is not base64 text"))
    };
    let challenge = wire.stanza().await?;
    if challenge.name != "challenge" {
        return Err(fail(&challenge));
    }
    let last = scram
        .answer(&decode(&challenge)?)
        .map_err(|e| refused(e.to_string()))?;
    wire.send(&format!(
        "<response xmlns='{}'>{}</response>",
        ns::SASL,
        b64.encode(last)
    ))
    .await?;
    let answer = wire.stanza().await?;
    match answer.name.as_str() {
        "success" => scram
            .verify(&decode(&answer)?)
            .map_err(|e| refused(e.to_string())),
        _ => Err(fail(&answer)),
    }
}

/// An `<iq type='set'>` and its answer (stanzas in between are kept in `early`).
async fn iq(
    wire: &mut Wire,
    id: &str,
    payload: &str,
    early: &mut VecDeque<Element>,
) -> Result<Element, ConnectError> {
    wire.send(&format!("<iq type='set' id='{id}'>{payload}</iq>"))
        .await?;
    loop {
        let e = wire.stanza().await?;
        if e.name == "iq" && e.attr("id") == Some(id) {
            return Ok(e);
        }
        keep(early, e)?;
    }
}

/// Keeps a stanza that arrived during the log-in for the session, within a bound.
fn keep(early: &mut VecDeque<Element>, e: Element) -> Result<(), ConnectError> {
    if early.len() >= super::EARLY_LIMIT {
        return Err(protocol(format!(
            "more than {} stanzas arrived during the log-in",
            super::EARLY_LIMIT
        )));
    }
    early.push_back(e);
    Ok(())
}

/// Creates `user`'s account (XEP-0077); an account that exists already is fine.
pub async fn register(
    setup: &XmppSetup,
    user: u32,
    source: Option<std::net::IpAddr>,
    steps: &Steps,
) -> Result<(), ConnectError> {
    let (mut wire, features) = connect(setup, source, steps).await?;
    if features.child("register", None).is_none() {
        return Err(refused(
            "does not offer in-band registration (XEP-0077); create the accounts with the server's own tool and set [target.xmpp] register = false",
        ));
    }
    let (username, password) = setup.account(user);
    let mut early = VecDeque::new();
    steps.reached(Step::Registration);
    let answer = iq(
        &mut wire,
        "reg",
        &format!(
            "<query xmlns='jabber:iq:register'><username>{}</username><password>{}</password></query>",
            esc(&username),
            esc(&password)
        ),
        &mut early,
    )
    .await?;
    let _ = wire.send("</stream:stream>").await;
    match answer.attr("type") {
        Some("result") => Ok(()),
        _ => match answer.child("error", None) {
            Some(e) if e.child("conflict", None).is_some() => Ok(()),
            Some(e) => Err(refused(format!(
                "refused to register `{username}`: {}",
                condition(e)
            ))),
            None => Err(protocol(
                "an answer to the registration that is neither result nor error",
            )),
        },
    }
}

/// Logs `user` in, binds its resource, enables acks, announces it and joins its rooms.
pub async fn login(
    setup: &XmppSetup,
    user: u32,
    groups: &[u32],
    source: Option<std::net::IpAddr>,
    steps: &Steps,
) -> Result<LoggedIn, ConnectError> {
    let (mut wire, features) = connect(setup, source, steps).await?;
    let (username, password) = setup.account(user);
    authenticate(setup, &mut wire, &features, &username, &password, steps).await?;
    let features = wire.open(&setup.domain, steps).await?;
    let sm = setup.target.stream_management && features.child("sm", Some(ns::SM)).is_some();
    if sm && let Some(earlier) = setup.take_resumption(user) {
        // XEP-0198 §5: the server hands back what we had not handled, the session keeps
        // its rooms and presence, and we learn which of our stanzas it had.
        steps.reached(Step::Resumption);
        wire.send(&format!(
            "<resume xmlns='{}' previd='{}' h='{}'/>",
            ns::SM,
            esc(&earlier.id),
            earlier.handled
        ))
        .await?;
        let mut early = VecDeque::new();
        loop {
            let e = wire.stanza().await?;
            match (e.name.as_str(), e.ns.as_str()) {
                ("resumed", ns::SM) => {
                    let h = e
                        .attr("h")
                        .and_then(|h| h.parse().ok())
                        .ok_or_else(|| protocol("<resumed> without a count"))?;
                    wire.stanzas_in = earlier.handled;
                    return Ok(LoggedIn {
                        wire,
                        acks: true,
                        early,
                        sent_since_enable: 0,
                        resume_id: Some(earlier.id.clone()),
                        resumed: Some((earlier, h)),
                    });
                }
                // Expired or unknown: a new session on this same stream.
                ("failed", ns::SM) => break,
                _ => keep(&mut early, e)?,
            }
        }
    }
    if features.child("bind", Some(ns::BIND)).is_none() {
        return Err(protocol("it offers no resource binding after the log-in"));
    }
    let mut early = VecDeque::new();
    steps.reached(Step::Binding);
    let bound = iq(
        &mut wire,
        "bind",
        &format!(
            "<bind xmlns='{}'><resource>{}</resource></bind>",
            ns::BIND,
            esc(&setup.target.resource)
        ),
        &mut early,
    )
    .await?;
    if bound.attr("type") != Some("result") {
        let why = bound
            .child("error", None)
            .map_or("no reason".into(), condition);
        return Err(refused(format!("refused to bind a resource: {why}")));
    }
    // RFC 3921 sessions: only servers that still require them get the request.
    if let Some(s) = features.child("session", None)
        && s.child("optional", None).is_none()
    {
        steps.reached(Step::Session);
        iq(
            &mut wire,
            "sess",
            "<session xmlns='urn:ietf:params:xml:ns:xmpp-session'/>",
            &mut early,
        )
        .await?;
    }
    let acks = sm;
    let mut resume_id = None;
    if acks {
        steps.reached(Step::StreamManagement);
        wire.send(&format!("<enable xmlns='{}' resume='true'/>", ns::SM))
            .await?;
        loop {
            let e = wire.stanza().await?;
            match (e.name.as_str(), e.ns.as_str()) {
                ("enabled", ns::SM) => {
                    wire.stanzas_in = 0;
                    if matches!(e.attr("resume"), Some("true" | "1")) {
                        resume_id = e.attr("id").map(str::to_string);
                    }
                    break;
                }
                ("failed", ns::SM) => {
                    return Err(refused(format!(
                        "refused stream management: {}",
                        condition(&e)
                    )));
                }
                _ => keep(&mut early, e)?,
            }
        }
    }
    // The rooms first, then initial presence: the server hands over what it stored while
    // the user was away only after the latter, and the session reads that as traffic.
    let mut joins = String::new();
    for g in groups {
        joins.push_str(&format!(
            "<presence to='{}/{}'><x xmlns='{}'><history maxstanzas='0'/></x></presence>",
            esc(&setup.room_jid(*g)),
            esc(&username),
            ns::MUC
        ));
    }
    if !joins.is_empty() {
        wire.send(&joins).await?;
    }
    let mut waiting: Vec<String> = groups.iter().map(|g| setup.room_jid(*g)).collect();
    while !waiting.is_empty() {
        steps.rooms_waiting(waiting.len(), groups.len());
        let e = wire.stanza().await?;
        let room = e
            .attr("from")
            .and_then(|f| f.split_once('/'))
            .map(|(room, _)| room);
        if e.name == "presence"
            && let Some(room) = room
            && let Some(i) = waiting.iter().position(|w| w == room)
        {
            if e.attr("type") == Some("error") {
                let why = e.child("error", None).map_or("no reason".into(), condition);
                return Err(refused(format!(
                    "refused to let `{username}` join {room}: {why}"
                )));
            }
            let own = e.child("x", Some(ns::MUC_USER)).is_some_and(|x| {
                x.children
                    .iter()
                    .any(|c| c.name == "status" && c.attr("code") == Some("110"))
            });
            if own {
                waiting.swap_remove(i);
            }
            continue;
        }
        keep(&mut early, e)?;
    }
    wire.send("<presence/>").await?;
    let sent_since_enable = groups.len() as u32 + 1;
    Ok(LoggedIn {
        wire,
        acks,
        early,
        sent_since_enable,
        resume_id,
        resumed: None,
    })
}
