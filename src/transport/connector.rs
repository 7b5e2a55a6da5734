//! Opening sessions: built once per run from the scenario's `[target]` (protocol, URL, TLS
//! trust, credentials), it opens each virtual user's [`AnySession`] of the right protocol.
//! Owns the choice of protocol and what is shared between sessions; not the sessions.

use super::gateway::GatewaySetup;
use super::http::{HttpSetup, Receiver};
use super::mqtt::MqttSetup;
use super::source::SourcePool;
use super::tls::{TlsContext, TlsError};
use super::xmpp::XmppSetup;
use super::{AnySession, ConnectError, OfflineDelivery, native};
use crate::metrics::ErrorKind;
use crate::scenario::Target;
use crate::scenario::target::{HttpDeliveries, Protocol};
use crate::secrets::{Credentials, CredentialsError, redact_url};
use std::sync::Arc;
use std::time::Duration;

/// Why the run's connector could not be built (before any traffic).
#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    #[error(transparent)]
    Tls(#[from] TlsError),
    #[error(transparent)]
    Credentials(#[from] CredentialsError),
    #[error("`{0}` is not a URL chatload can use here: {1}")]
    Url(String, &'static str),
    #[error("cannot build the HTTP client: {0}")]
    Http(String),
    #[error("{0}")]
    Ids(String),
}

/// Where a user's deliveries arrive when it sends over HTTP.
enum Receive {
    Native(String),
    Mqtt(Arc<MqttSetup>),
    Gateway(Arc<GatewaySetup>),
    Webhook,
    Nothing,
}

enum Kind {
    Native(String),
    Mqtt(Arc<MqttSetup>),
    Gateway(Arc<GatewaySetup>),
    Http(Arc<HttpSetup>, Receive),
    Xmpp(Arc<XmppSetup>),
}

pub struct Connector {
    kind: Kind,
    tls: TlsContext,
    sources: SourcePool,
    /// This run's token in chatload's protocol (see `protocol::hello`).
    run: u64,
}

/// The error kind of an I/O failure.
pub fn classify_io(io: &std::io::Error) -> ErrorKind {
    if super::source::is_local_limit(io) {
        return ErrorKind::LocalLimit;
    }
    // A wrapped one says more than its wrapper: hyper's connector wraps the TLS handshake's
    // error (InvalidData, with the rustls error inside) in one of kind Other, and
    // `source()` skips an io::Error's own inner error.
    if let Some(inner) = io
        .get_ref()
        .and_then(|e| e.downcast_ref::<std::io::Error>())
    {
        return classify_io(inner);
    }
    match io.kind() {
        std::io::ErrorKind::ConnectionRefused => ErrorKind::ConnectRefused,
        std::io::ErrorKind::ConnectionReset
        | std::io::ErrorKind::BrokenPipe
        | std::io::ErrorKind::ConnectionAborted
        | std::io::ErrorKind::UnexpectedEof => ErrorKind::ConnectionReset,
        std::io::ErrorKind::TimedOut => ErrorKind::ConnectTimeout,
        std::io::ErrorKind::InvalidData
            if io
                .get_ref()
                .is_some_and(|e| e.downcast_ref::<rustls::Error>().is_some()) =>
        {
            ErrorKind::Tls
        }
        _ => ErrorKind::ConnectFailed,
    }
}

fn mqtt_setup(
    target: &Arc<crate::scenario::target::MqttTarget>,
    url: &str,
    tls: &TlsContext,
    creds: &Credentials,
    sources: &SourcePool,
) -> Result<MqttSetup, SetupError> {
    let (broker, secure) = super::mqtt::parse_url(url).ok_or_else(|| {
        SetupError::Url(
            url.to_string(),
            "write mqtt://host:port or mqtts://host:port",
        )
    })?;
    let username = creds.username.as_ref().map(|s| s.expose().to_string());
    let password = creds
        .password
        .as_ref()
        .or(creds.token.as_ref())
        .map(|s| s.expose().to_string());
    Ok(MqttSetup {
        target: target.clone(),
        address: broker.address(),
        broker,
        tls: secure.then(|| tls.clone()),
        // A broker that takes a token as the password still wants a user name.
        username: username.or_else(|| password.as_ref().map(|_| "chatload".to_string())),
        password,
        per_user: creds.per_user.is_some().then(|| Arc::new(creds.clone())),
        sources: sources.clone(),
    })
}

/// A token no other run is likely to share: the wall clock in nanoseconds mixed with the
/// process id.
fn run_token() -> u64 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    (nanos ^ (u64::from(std::process::id()) << 40)).max(1)
}

/// The WebSocket URL of chatload's reference server behind an HTTP base URL.
fn websocket_of(http_base: &str) -> String {
    let ws = http_base
        .replacen("https://", "wss://", 1)
        .replacen("http://", "ws://", 1);
    format!("{}/v1/ws", ws.trim_end_matches('/'))
}

impl Connector {
    /// `url` is the target's (or the embedded server's WebSocket URL); `http_base` the
    /// embedded server's HTTP URL when it runs. In a closed loop each user sends over a
    /// keep-alive HTTP connection of its own instead of the shared pool.
    pub fn new(
        target: &Target,
        url: &str,
        http_base: Option<&str>,
        closed_loop: bool,
        sources: SourcePool,
    ) -> Result<Self, SetupError> {
        let tls = TlsContext::new(target.ca_file.as_deref())?;
        let creds = Arc::new(Credentials::from_env(&target.credentials)?);
        let run = run_token();
        let run_text: Arc<str> = format!("{run:x}").into();
        // Whatever the target echoes back, in whatever encoding, must not show them.
        crate::secrets::remember_url(url);
        if let Some(base) = &target.url {
            crate::secrets::remember_url(base);
        }
        if let (Some(u), Some(p)) = (&creds.username, &creds.password) {
            crate::secrets::remember_pair(u.expose(), p.expose());
        }
        let kind = match &target.protocol {
            Protocol::Chatload => Kind::Native(url.to_string()),
            Protocol::Mqtt(m) => Kind::Mqtt(Arc::new(mqtt_setup(m, url, &tls, &creds, &sources)?)),
            Protocol::WsGateway(g) => Kind::Gateway(Arc::new(GatewaySetup {
                url: url.to_string(),
                target: g.clone(),
                tls: tls.clone(),
                credentials: creds.clone(),
                sources: sources.clone(),
                run: run_text.clone(),
            })),
            Protocol::Xmpp(x) => Kind::Xmpp(Arc::new(
                XmppSetup::new(x.clone(), url, tls.clone(), creds.clone(), sources.clone())
                    .ok_or_else(|| {
                        SetupError::Url(redact_url(url), "write xmpp://host:port (5222 by default)")
                    })?,
            )),
            Protocol::Http(h) => {
                let base = match (&target.url, http_base) {
                    (Some(u), _) => u.clone(),
                    (None, Some(b)) => b.to_string(),
                    (None, None) => url.to_string(),
                };
                // The subscription may log in with credentials of its own (an MQTT broker's
                // password is not the HTTP API's token).
                let receive_creds = match &h.subscribe_credentials {
                    Some(names) => {
                        let c = Arc::new(Credentials::from_env(names)?);
                        if let (Some(u), Some(p)) = (&c.username, &c.password) {
                            crate::secrets::remember_pair(u.expose(), p.expose());
                        }
                        c
                    }
                    None => creds.clone(),
                };
                let receive = match &h.deliveries {
                    HttpDeliveries::Webhook(_) => Receive::Webhook,
                    HttpDeliveries::None => Receive::Nothing,
                    HttpDeliveries::Subscription { url: sub, protocol } => {
                        let sub = sub.clone().unwrap_or_else(|| websocket_of(&base));
                        match protocol.as_ref() {
                            Protocol::Mqtt(m) => Receive::Mqtt(Arc::new(mqtt_setup(
                                m,
                                &sub,
                                &tls,
                                &receive_creds,
                                &sources,
                            )?)),
                            Protocol::WsGateway(g) => Receive::Gateway(Arc::new(GatewaySetup {
                                url: sub,
                                target: g.clone(),
                                tls: tls.clone(),
                                credentials: receive_creds.clone(),
                                sources: sources.clone(),
                                run: run_text.clone(),
                            })),
                            _ => Receive::Native(sub),
                        }
                    }
                };
                let client = tls
                    .http_client()
                    .pool_max_idle_per_host(64)
                    .build()
                    .map_err(|e| SetupError::Http(e.to_string()))?;
                let method = reqwest::Method::from_bytes(h.method.as_bytes())
                    .map_err(|_| SetupError::Url(h.method.clone(), "not an HTTP method"))?;
                let connection = match closed_loop {
                    true => Some(Arc::new(
                        super::http1::Endpoint::parse(&base, &tls).ok_or_else(|| {
                            SetupError::Url(
                                redact_url(&base),
                                "write http://host:port or https://host:port",
                            )
                        })?,
                    )),
                    false => None,
                };
                // An open model's requests for the target's own host go on shared lean
                // connections whose answers carry arrival stamps; a URL it cannot parse
                // leaves every request to reqwest.
                let pool = match closed_loop {
                    true => None,
                    false => super::http1::Endpoint::parse(&base, &tls).map(|endpoint| {
                        Arc::new(super::http1_pool::Http1Pool::new(
                            Arc::new(endpoint),
                            h.timeout.as_std(),
                            h.id.clone(),
                            method == reqwest::Method::HEAD,
                            h.max_answer,
                        ))
                    }),
                };
                Kind::Http(
                    Arc::new(HttpSetup {
                        client,
                        target: h.clone(),
                        base,
                        credentials: creds.clone(),
                        method,
                        connection,
                        pool,
                        ids: h
                            .ids
                            .as_deref()
                            .map(crate::scenario::ids::IdMap::load)
                            .transpose()
                            .map_err(SetupError::Ids)?
                            .map(Arc::new),
                        run: run_text.clone(),
                    }),
                    receive,
                )
            }
        };
        Ok(Connector {
            kind,
            tls,
            sources,
            run,
        })
    }

    /// The HTTP send side, when the target is an HTTP API.
    pub fn http(&self) -> Option<&Arc<HttpSetup>> {
        match &self.kind {
            Kind::Http(h, _) => Some(h),
            _ => None,
        }
    }

    /// The system's own ids of users, groups and conversations (`[target.http] ids`).
    pub fn ids(&self) -> Option<&crate::scenario::ids::IdMap> {
        match &self.kind {
            Kind::Http(h, _) => h.ids.as_deref(),
            _ => None,
        }
    }

    /// The URL of chatload's own WebSocket protocol this run uses, if any (groups are
    /// registered there, and the reference server's admin API sits beside it).
    pub fn native_url(&self) -> Option<&str> {
        match &self.kind {
            Kind::Native(u) | Kind::Http(_, Receive::Native(u)) => Some(u),
            _ => None,
        }
    }

    /// The MQTT broker's set-up, when users reach one (to send or to receive).
    pub fn mqtt(&self) -> Option<&MqttSetup> {
        match &self.kind {
            Kind::Mqtt(m) | Kind::Http(_, Receive::Mqtt(m)) => Some(m),
            _ => None,
        }
    }

    /// An MQTT broker that keeps sessions: each user's is opened once before the run.
    pub fn mqtt_sessions(&self) -> Option<&MqttSetup> {
        self.mqtt().filter(|m| m.persistent())
    }

    /// The XMPP set-up, when users speak XMPP.
    pub fn xmpp(&self) -> Option<&XmppSetup> {
        match &self.kind {
            Kind::Xmpp(x) => Some(x),
            _ => None,
        }
    }

    /// Whether messages are delivered to anyone (not so for a plain request/response API,
    /// where the answer is the whole story and no recipient is owed anything).
    pub fn delivers(&self) -> bool {
        !matches!(self.kind, Kind::Http(_, Receive::Nothing))
    }

    /// Whether each user holds a connection of its own (not so for an HTTP API whose
    /// requests share a pool and whose deliveries, if any, come to a webhook).
    pub fn connection_per_user(&self) -> bool {
        !matches!(
            self.kind,
            Kind::Http(_, Receive::Webhook | Receive::Nothing)
        )
    }

    /// The name of the protocol sessions speak first ("chatload", "mqtt", "ws-gateway"),
    /// for messages about what answered.
    pub fn protocol_name(&self) -> &'static str {
        match &self.kind {
            Kind::Native(_) | Kind::Http(_, Receive::Native(_)) => "chatload",
            Kind::Mqtt(_) | Kind::Http(_, Receive::Mqtt(_)) => "MQTT",
            Kind::Gateway(_) | Kind::Http(_, Receive::Gateway(_)) => "gateway's",
            Kind::Http(_, _) => "HTTP",
            Kind::Xmpp(_) => "XMPP",
        }
    }

    /// What the target does with deliveries for a recipient who is offline.
    pub fn offline_delivery(&self) -> OfflineDelivery {
        let mqtt = |m: &MqttSetup| match m.persistent() {
            true => OfflineDelivery::Resumed,
            false => OfflineDelivery::NotResumed,
        };
        match &self.kind {
            Kind::Native(_) | Kind::Http(_, Receive::Native(_)) => OfflineDelivery::Resumed,
            Kind::Mqtt(m) | Kind::Http(_, Receive::Mqtt(m)) => mqtt(m),
            Kind::Gateway(_) | Kind::Http(_, Receive::Gateway(_)) => OfflineDelivery::NotResumed,
            Kind::Http(_, Receive::Webhook | Receive::Nothing) => OfflineDelivery::Pushed,
            // Offline storage (RFC 6121 §8.5.2.2.1, XEP-0160): a returning user's initial
            // presence brings what was sent to it while it was away.
            Kind::Xmpp(_) => OfflineDelivery::Resumed,
        }
    }

    /// Whether a group message reaches members who are offline when it is sent (kept for
    /// them, or pushed). Not so for XMPP: a MUC room delivers to its occupants, and a member
    /// who joins later gets no history (chatload joins with none), so only the members
    /// connected at the send are owed it.
    pub fn groups_keep_for_offline(&self) -> bool {
        !matches!(self.kind, Kind::Xmpp(_))
    }

    /// This run's token in chatload's protocol.
    pub fn run(&self) -> u64 {
        self.run
    }

    pub fn tls(&self) -> &TlsContext {
        &self.tls
    }

    /// Opens `user`'s session, resuming after `last_seq` where the protocol can.
    pub async fn connect(
        &self,
        user: u32,
        last_seq: u64,
        groups: &[u32],
        timeout: Duration,
    ) -> Result<AnySession, ConnectError> {
        let source = self.sources.for_user(user);
        match &self.kind {
            Kind::Native(url) => {
                native::connect(url, &self.tls, (user, last_seq, self.run), timeout, source)
                    .await
                    .map(AnySession::Native)
            }
            Kind::Mqtt(m) => m
                .connect(user, groups, timeout)
                .await
                .map(|s| AnySession::Mqtt(Box::new(s))),
            Kind::Gateway(g) => g
                .connect(user, groups, timeout)
                .await
                .map(AnySession::Gateway),
            Kind::Xmpp(x) => x.connect(user, groups, timeout).await.map(AnySession::Xmpp),
            Kind::Http(setup, receive) => {
                let receiver = match receive {
                    Receive::Native(url) => Receiver::Native(
                        native::connect(
                            url,
                            &self.tls,
                            (user, last_seq, self.run),
                            timeout,
                            source,
                        )
                        .await?,
                    ),
                    Receive::Mqtt(m) => {
                        Receiver::Mqtt(Box::new(m.connect(user, groups, timeout).await?))
                    }
                    Receive::Gateway(g) => {
                        Receiver::Gateway(g.connect(user, groups, timeout).await?)
                    }
                    Receive::Webhook => Receiver::Webhook,
                    Receive::Nothing => Receiver::Nothing,
                };
                Ok(AnySession::Http(
                    setup.session(user, receiver, timeout, source).await?,
                ))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn io_errors_map_to_kinds() {
        use std::io::{Error, ErrorKind as K};
        assert_eq!(
            classify_io(&Error::from(K::ConnectionRefused)),
            ErrorKind::ConnectRefused
        );
        assert_eq!(
            classify_io(&Error::from(K::ConnectionReset)),
            ErrorKind::ConnectionReset
        );
        assert_eq!(
            classify_io(&Error::from(K::TimedOut)),
            ErrorKind::ConnectTimeout
        );
        // As hyper's connector hands over a failed TLS handshake: the rustls error inside
        // an InvalidData error inside one of kind Other.
        let handshake = Error::new(K::InvalidData, rustls::Error::General("bad".into()));
        assert_eq!(classify_io(&handshake), ErrorKind::Tls);
        assert_eq!(classify_io(&Error::other(handshake)), ErrorKind::Tls);
        let cut = Error::other(Error::from(K::UnexpectedEof));
        assert_eq!(classify_io(&cut), ErrorKind::ConnectionReset);
    }

    #[test]
    fn the_reference_servers_websocket_sits_beside_its_http() {
        assert_eq!(
            websocket_of("http://127.0.0.1:7070"),
            "ws://127.0.0.1:7070/v1/ws"
        );
        assert_eq!(websocket_of("https://h/"), "wss://h/v1/ws");
    }
}
