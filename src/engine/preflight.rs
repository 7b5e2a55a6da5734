//! Before any traffic: prove the target answers in its protocol, and register the
//! population's groups where the protocol has a place for that (chatload's reference
//! server). Owns the pre-flight session; a target that refuses gets one clear sentence here,
//! not thousands of connection errors later.

use super::options::RunError;
use crate::protocol;
use crate::secrets::{redact, redact_url};
use crate::transport::mqtt::MqttSetup;
use crate::transport::xmpp::XmppSetup;
use crate::transport::{ConnectError, Connector, Session, native};
use crate::workload::{Population, Segment};
use futures_util::StreamExt;
use std::time::Duration;
use tokio_tungstenite::tungstenite::Message;

/// A user id outside every population, used for the pre-flight and group set-up session.
pub const CONTROL_USER: u32 = u32::MAX;

/// What the pre-flight found besides a target that answers.
#[derive(Debug, Default)]
pub struct Prepared {
    /// Messages the target handed over while the users' sessions were opened, before this
    /// run sent anything: an earlier run's, which the target kept (MQTT persistent sessions).
    pub earlier_runs: u64,
}

pub async fn prepare(
    connector: &Connector,
    url: &str,
    population: &Population,
    timeout: Duration,
    segment: Segment,
) -> Result<Prepared, RunError> {
    // Segments starting together must not share one control session. On XMPP the control
    // session is the segment's first user: an account of the run, with its credentials,
    // rather than one more account made only for the check.
    let control = match connector.xmpp() {
        Some(_) => (0..population.users())
            .find(|u| segment.owns(*u))
            .unwrap_or(CONTROL_USER - segment.index),
        None => CONTROL_USER - segment.index,
    };
    let answered_but = |detail: String| answered_but(url, &detail);
    let protocol = connector.protocol_name();
    match connector.native_url() {
        Some(native_url) => {
            register_groups(connector, native_url, population, timeout, segment, control)
                .await
                .map(|()| Prepared::default())
        }
        None => {
            if let Some(xmpp) = connector.xmpp().filter(|x| x.target.register) {
                // Every account first: a message to an account that does not exist yet
                // would bounce, and the control session needs one to log in.
                if let Err(e) = xmpp.register(control, timeout).await {
                    return Err(first_failure_seen(url, protocol, &e, Some(&xmpp.address)).await);
                }
                register_accounts(xmpp, population, timeout, segment)
                    .await
                    .map_err(answered_but)?;
            }
            let mut session = match connector.connect(control, 0, &[], timeout).await {
                Ok(s) => s,
                Err(e) => {
                    return Err(
                        match mqtt5_refused(connector, control, timeout, url).await {
                            Some(refused) => refused,
                            None => {
                                let address = connector.xmpp().map(|x| x.address.as_str());
                                first_failure_seen(url, protocol, &e, address).await
                            }
                        },
                    );
                }
            };
            let _ = tokio::time::timeout(Duration::from_millis(500), session.close()).await;
            let mut prepared = Prepared::default();
            if let Some(mqtt) = connector.mqtt_sessions() {
                prepared.earlier_runs = register_sessions(mqtt, population, timeout, segment)
                    .await
                    .map_err(answered_but)?;
            }
            Ok(prepared)
        }
    }
}

/// One sentence for a set-up step that failed after the target had answered: never "not
/// reachable", since something did answer.
fn answered_but(url: &str, detail: &str) -> RunError {
    RunError::Refused(format!(
        "the target {} answered, but {}",
        redact_url(url),
        redact(detail)
    ))
}

/// How long the pre-flight waits for a TCP connection of its own, after a first session
/// timed out, to tell a target that accepts connections and then says nothing from one that
/// nothing answers for.
const TCP_PROBE: Duration = Duration::from_secs(2);

/// As [`first_failure`], for a first session that timed out: a stopped or overloaded server
/// still has its kernel accept TCP connections, so a plain connection is tried to see whether
/// anything answered at all — never "not reachable" when something did.
/// `address` is where the protocol connects when not at the URL's own host and port (an
/// XMPP server's).
pub async fn first_failure_seen(
    url: &str,
    protocol: &str,
    e: &ConnectError,
    address: Option<&str>,
) -> RunError {
    if e.kind != crate::metrics::ErrorKind::ConnectTimeout {
        return first_failure(url, protocol, e);
    }
    let accepted = match address.map(str::to_string).or_else(|| tcp_address(url)) {
        Some(addr) => matches!(
            tokio::time::timeout(TCP_PROBE, tokio::net::TcpStream::connect(&addr)).await,
            Ok(Ok(_))
        ),
        None => false,
    };
    if !accepted {
        return first_failure(url, protocol, e);
    }
    let detail = e
        .detail
        .strip_prefix("the TCP connection was accepted, but ")
        .unwrap_or(&e.detail);
    RunError::Refused(format!(
        "the target {} accepted a TCP connection, but did not answer in the {protocol} protocol ({}); is the server running (not stopped or overloaded), and does it speak that protocol?",
        redact_url(url),
        redact(detail)
    ))
}

/// `host:port` of a target URL, with the scheme's usual port when it names none.
fn tcp_address(url: &str) -> Option<String> {
    crate::transport::authority::Authority::of(url).map(|a| a.address())
}

/// One sentence for a first connection that failed, naming what actually happened: "not
/// reachable" only when no connection could be made at all; otherwise what answered.
pub fn first_failure(url: &str, protocol: &str, e: &ConnectError) -> RunError {
    use crate::metrics::ErrorKind as K;
    let shown_url = redact_url(url);
    let detail = redact(&e.detail);
    let says = |text: String| RunError::Refused(format!("the target {shown_url} {text}"));
    match e.kind {
        K::ConnectRefused | K::ConnectTimeout | K::ConnectFailed => RunError::Unreachable {
            url: shown_url,
            detail,
        },
        K::Http4xx | K::Http5xx => {
            let path = reqwest::Url::parse(url).map(|u| u.path().to_string());
            let hint = if protocol == "chatload" && path.as_deref().is_ok_and(|p| p != "/v1/ws") {
                "chatload serve takes WebSockets at /v1/ws, so check the path in --target"
                    .to_string()
            } else {
                format!(
                    "check that --target is a WebSocket endpoint of the {protocol} protocol, and whether the server wants a subprotocol or a header"
                )
            };
            says(format!(
                "answered the WebSocket upgrade with HTTP {} instead of 101 Switching Protocols; {hint}",
                detail.trim_start_matches("HTTP error: ")
            ))
        }
        K::Tls => says(format!(
            "answered, but the TLS handshake failed ({detail}); check its certificate, or trust its CA with --ca-file"
        )),
        K::BrokerRefused => says(broker_refusal(&detail)),
        K::Protocol => says(format!(
            "answered, but not in the {protocol} protocol ({detail}); check --target and [target] protocol"
        )),
        K::ServerError => says(format!("refused the log-in: {detail}")),
        K::HelloTimeout => says(format!(
            "accepted the connection but did not complete the log-in ({detail}); is the server running (not stopped or overloaded), and does it speak the {protocol} protocol?"
        )),
        K::ConnectionReset | K::ConnectionClosed => says(format!(
            "accepted the connection and then closed it during the log-in ({detail})"
        )),
        K::Http | K::RequestTimeout => says(format!("failed the first session: {detail}")),
        K::AnswerTooLong => says(format!(
            "answered the first session with more than chatload reads ({detail}); raise [target.http] max_answer if such answers are expected"
        )),
        K::TargetNotReading => says(format!(
            "accepted the connection but stopped reading during the log-in ({detail})"
        )),
        K::LocalLimit => RunError::Setup(detail),
    }
}

/// A broker that speaks only MQTT 3.1.1 answers an MQTT 5 CONNECT with a 3.1.1 CONNACK
/// (return code 1, unacceptable protocol level) that an MQTT 5 client cannot read, so the
/// failure looks like a dropped connection. Asking again in 3.1.1 tells the two apart.
async fn mqtt5_refused(
    connector: &Connector,
    control: u32,
    timeout: Duration,
    url: &str,
) -> Option<RunError> {
    let mqtt = connector.mqtt().filter(|m| m.is_v5())?;
    let mut session = mqtt.as_v311().connect(control, &[], timeout).await.ok()?;
    let _ = tokio::time::timeout(Duration::from_millis(500), session.close()).await;
    Some(RunError::Refused(format!(
        "the target {} (an MQTT broker) refused the MQTT protocol version chatload asked for (MQTT 5) and accepted MQTT 3.1.1; set [target.mqtt] version = \"3.1.1\"",
        redact_url(url)
    )))
}

/// What an MQTT broker's refusal means, with what to change.
fn broker_refusal(detail: &str) -> String {
    let lower = detail.to_ascii_lowercase();
    if lower.contains("password")
        || lower.contains("notauthorized")
        || lower.contains("not authorized")
    {
        format!(
            "(an MQTT broker) rejected the credentials ({detail}); check the environment variables named in [target.auth]"
        )
    } else if lower.contains("protocol") && lower.contains("version") {
        format!(
            "(an MQTT broker) refused the MQTT protocol version chatload asked for ({detail}); set [target.mqtt] version to one it speaks, e.g. version = \"3.1.1\""
        )
    } else {
        format!("(an MQTT broker) refused the connection ({detail})")
    }
}

/// Sessions opened at once while registering, to be quick without a connect storm.
const REGISTERING: usize = 64;

/// Runs `step` for every user of this segment, `REGISTERING` at a time; the first failure
/// ends it with the user's number.
async fn for_every_user<F, Fut>(
    population: &Population,
    segment: Segment,
    step: F,
) -> Result<u64, (u32, ConnectError)>
where
    F: Fn(u32) -> Fut,
    Fut: std::future::Future<Output = Result<u64, ConnectError>>,
{
    let mut users = (0..population.users()).filter(|u| segment.owns(*u));
    let mut open = futures_util::stream::FuturesUnordered::new();
    let mut total = 0;
    loop {
        while open.len() < REGISTERING {
            let Some(u) = users.next() else { break };
            let done = step(u);
            open.push(async move { (u, done.await) });
        }
        match open.next().await {
            Some((_, Ok(n))) => total += n,
            Some((u, Err(e))) => return Err((u, e)),
            None => return Ok(total),
        }
    }
}

/// Opens every user's persistent MQTT session once, subscribed to its topics, so that
/// messages to users who are not yet online are queued for them rather than dropped.
/// Returns how many messages the broker handed over from before this run (see
/// [`MqttSetup::register`]).
async fn register_sessions(
    mqtt: &MqttSetup,
    population: &Population,
    timeout: Duration,
    segment: Segment,
) -> Result<u64, String> {
    for_every_user(population, segment, |u| async move {
        mqtt.register(u, &population.groups_of(u), timeout).await
    })
    .await
    .map_err(|(_, e)| format!("registering the users' MQTT sessions failed: {e}"))
}

/// Creates every account of this segment's users on an XMPP server (XEP-0077).
async fn register_accounts(
    xmpp: &XmppSetup,
    population: &Population,
    timeout: Duration,
    segment: Segment,
) -> Result<(), String> {
    for_every_user(population, segment, |u| async move {
        xmpp.register(u, timeout).await.map(|()| 0)
    })
    .await
    .map(|_| ())
    .map_err(|(u, e)| format!("registering the XMPP account of user {u} failed: {e}"))
}

/// Opens one session on chatload's protocol, then defines every group.
async fn register_groups(
    connector: &Connector,
    url: &str,
    population: &Population,
    timeout: Duration,
    segment: Segment,
    control: u32,
) -> Result<(), RunError> {
    let conn = match native::connect(
        url,
        connector.tls(),
        (control, 0, connector.run()),
        timeout,
        None,
    )
    .await
    {
        Ok(c) => c,
        Err(e) => return Err(first_failure_seen(url, "chatload", &e, None).await),
    };
    let mut ws = conn.ws;
    // Each segment defines its own groups.
    let groups: Vec<(u32, &[u32])> = population
        .groups()
        .iter()
        .enumerate()
        .map(|(g, m)| (g as u32, &m[..]))
        .filter(|(g, _)| segment.owns(*g))
        .collect();
    let setup = async {
        let mut confirmed = 0usize;
        for (g, members) in &groups {
            ws.push(Message::text(protocol::group(*g, members)));
        }
        ws.write_all()
            .await
            .map_err(|e| answered_but(url, &format!("the group set-up failed: {e}")))?;
        while confirmed < groups.len() {
            match ws.recv().await {
                Some(Ok(Message::Text(t))) => {
                    match protocol::decode(&t).map(|f| f.op.into_owned()).as_deref() {
                        Ok("group_ok") => confirmed += 1,
                        Ok("error") => {
                            return Err(RunError::Setup(format!(
                                "the target refused a group definition: {t}"
                            )));
                        }
                        _ => {}
                    }
                }
                Some(Ok(_)) => {}
                Some(Err(e)) => {
                    return Err(answered_but(url, &format!("the group set-up failed: {e}")));
                }
                None => {
                    return Err(answered_but(
                        url,
                        "closed the connection during the group set-up",
                    ));
                }
            }
        }
        Ok(())
    };
    tokio::time::timeout(
        timeout + Duration::from_millis(groups.len() as u64 / 10),
        setup,
    )
    .await
    .map_err(|_| RunError::Setup("the target did not confirm the groups in time".into()))??;
    let _ = tokio::time::timeout(Duration::from_millis(500), ws.close()).await;
    Ok(())
}

/// Why a scenario cannot be split into `segment`s, if it cannot: a mention-all storm's
/// group holds the whole population, so its deliveries would land on every machine and no
/// one clock could time them. (Business patterns split by the consumer each message is
/// for; see `Order::owner`.)
pub fn segment_refusal(
    s: &crate::scenario::Scenario,
    segment: crate::workload::Segment,
) -> Option<String> {
    if segment.is_whole() {
        return None;
    }
    s.patterns.iter().find_map(|p| match &p.kind {
        crate::scenario::PatternKind::GroupChat {
            mention_all: Some(_),
            ..
        } => Some(format!(
            "pattern `{}` has a mention_all storm, whose group spans every segment; run it whole or drop mention_all",
            p.name
        )),
        _ => None,
    })
}
