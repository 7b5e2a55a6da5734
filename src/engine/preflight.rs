//! Before any traffic: prove the target answers in its protocol, and register the
//! population's groups where the protocol has a place for that (chatload's reference
//! server). Owns the pre-flight session; a target that refuses gets one clear sentence here,
//! not thousands of connection errors later.

use super::run::RunError;
use crate::protocol;
use crate::transport::mqtt::MqttSetup;
use crate::transport::{Connector, Session, native};
use crate::workload::{Population, Segment};
use futures_util::StreamExt;
use std::time::Duration;
use tokio_tungstenite::tungstenite::Message;

/// A user id outside every population, used for the pre-flight and group set-up session.
pub const CONTROL_USER: u32 = u32::MAX;

pub async fn prepare(
    connector: &Connector,
    url: &str,
    population: &Population,
    timeout: Duration,
    segment: Segment,
) -> Result<(), RunError> {
    // Segments starting together must not share one control session.
    let control = CONTROL_USER - segment.index;
    let unreachable = |detail: String| RunError::Unreachable {
        url: crate::transport::secrets::redact_url(url),
        detail: crate::transport::secrets::redact(&detail),
    };
    match connector.native_url() {
        Some(native_url) => {
            register_groups(connector, native_url, population, timeout, segment, control).await
        }
        None => {
            let mut session = connector
                .connect(control, 0, &[], timeout)
                .await
                .map_err(|e| unreachable(e.to_string()))?;
            let _ = tokio::time::timeout(Duration::from_millis(500), session.close()).await;
            if let Some(mqtt) = connector.mqtt_sessions() {
                register_sessions(mqtt, population, timeout, segment)
                    .await
                    .map_err(unreachable)?;
            }
            Ok(())
        }
    }
}

/// Sessions opened at once while registering, to be quick without a connect storm.
const REGISTERING: usize = 64;

/// Opens every user's persistent MQTT session once, subscribed to its topics, so that
/// messages to users who are not yet online are queued for them rather than dropped.
async fn register_sessions(
    mqtt: &MqttSetup,
    population: &Population,
    timeout: Duration,
    segment: Segment,
) -> Result<(), String> {
    let mut users = (0..population.users()).filter(|u| segment.owns(*u));
    let mut open = futures_util::stream::FuturesUnordered::new();
    loop {
        while open.len() < REGISTERING {
            let Some(u) = users.next() else { break };
            let groups = population.groups_of(u);
            open.push(async move { mqtt.register(u, &groups, timeout).await });
        }
        match open.next().await {
            Some(Ok(())) => {}
            Some(Err(e)) => return Err(format!("registering the users' MQTT sessions: {e}")),
            None => return Ok(()),
        }
    }
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
    let unreachable = |detail: String| RunError::Unreachable {
        url: crate::transport::secrets::redact_url(url),
        detail: crate::transport::secrets::redact(&detail),
    };
    let conn = native::connect(url, connector.tls(), control, 0, timeout, None)
        .await
        .map_err(|e| unreachable(e.to_string()))?;
    let (mut reader, mut writer) = (conn.reader, conn.writer);
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
            writer.push(Message::text(protocol::group(*g, members)));
        }
        while writer.has_work() {
            writer
                .progress()
                .await
                .map_err(|e| unreachable(e.to_string()))?;
        }
        while confirmed < groups.len() {
            match reader.next().await {
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
                Some(Err(e)) => return Err(unreachable(e.to_string())),
                None => return Err(unreachable("closed during group set-up".into())),
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
    let _ = tokio::time::timeout(Duration::from_millis(500), writer.close()).await;
    Ok(())
}
