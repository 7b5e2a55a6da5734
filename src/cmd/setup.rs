//! `chatload setup matrix`: a homeserver made ready for a scenario, and the ids file
//! written; exit 0 when written, 2 for bad input, 3 when the homeserver refused a step.

use super::{BAD_INPUT, PASSED, RUN_FAILED, parse_duration_flag};
use crate::cli::{MatrixSetupArgs, SetupCommand};
use chatload::scenario;
use chatload::setup::matrix::{ALIAS_PREFIX, MatrixSetup, RoomCounts};
use chatload::workload::{Population, Segment};

pub async fn run(command: SetupCommand) -> u8 {
    match command {
        SetupCommand::Matrix(a) => matrix(a).await,
    }
}

async fn matrix(a: MatrixSetupArgs) -> u8 {
    let s = match scenario::load(&a.file) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("{e}");
            return BAD_INPUT;
        }
    };
    let Ok(as_token) = std::env::var(&a.as_token_env) else {
        eprintln!(
            "chatload: set {} to the application service's as_token",
            a.as_token_env
        );
        return BAD_INPUT;
    };
    if reqwest::Url::parse(&a.homeserver)
        .ok()
        .and_then(|u| u.host_str().map(str::to_string))
        .is_none()
    {
        eprintln!(
            "chatload: --homeserver {} is not a URL (http://host:port)",
            chatload::secrets::redact_url(&a.homeserver)
        );
        return BAD_INPUT;
    };
    if !a.localpart.contains("{user}") {
        eprintln!("chatload: --localpart must contain {{user}}");
        return BAD_INPUT;
    }
    let request_timeout = match parse_duration_flag("--timeout", &a.timeout) {
        Ok(t) if t.0 > 0 => t.as_std(),
        Ok(_) => {
            eprintln!("chatload: --timeout must be longer than 0s");
            return BAD_INPUT;
        }
        Err(code) => return code,
    };
    chatload::secrets::remember(&as_token);
    chatload::secrets::remember_url(&a.homeserver);
    let population = match Population::for_segment(&s, Segment::WHOLE) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("chatload: {e}");
            return BAD_INPUT;
        }
    };
    let mut setup = match MatrixSetup::new(
        a.homeserver.clone(),
        as_token,
        a.server_name.clone().unwrap_or_default(),
        a.localpart,
        request_timeout,
    ) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("chatload: {e}");
            return RUN_FAILED;
        }
    };
    if a.server_name.is_none() {
        match setup.server_name().await {
            Ok(name) => setup.server_name = name,
            Err(e) => {
                eprintln!("chatload: {}", chatload::secrets::redact(&e));
                return RUN_FAILED;
            }
        }
    }
    // The homeserver pushes the set-up's own events to the application service's URL,
    // which is the scenario's webhook: answered here, or it would count the service as down.
    let webhook = match &s.target.protocol {
        scenario::target::Protocol::Http(h) => match &h.deliveries {
            scenario::target::HttpDeliveries::Webhook(w) => w.listen.parse().ok(),
            _ => None,
        },
        _ => None,
    }
    .filter(|a: &std::net::SocketAddr| a.port() != 0);
    let (done, stopped) = tokio::sync::oneshot::channel::<()>();
    let sink = webhook.map(|addr| {
        tokio::spawn(chatload::setup::matrix::sink(
            addr,
            std::time::Duration::from_secs(2),
            async move {
                let _ = stopped.await;
            },
        ))
    });
    let provisioned = setup.provision(&population).await;
    let _ = done.send(());
    let pushed = match sink {
        Some(task) => match task.await {
            Ok(Ok(n)) => Some(n),
            Ok(Err(e)) => {
                eprintln!(
                    "chatload: cannot take the homeserver's pushes at the scenario's webhook address ({e}); it may count the application service as down"
                );
                None
            }
            Err(_) => None,
        },
        None => None,
    };
    let (ids, group_rooms, direct_rooms) = match provisioned {
        Ok(made) => made,
        Err(e) => {
            eprintln!("chatload: {}", chatload::secrets::redact(&e));
            return RUN_FAILED;
        }
    };
    let text = match serde_json::to_string_pretty(&ids) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("chatload: {e}");
            return RUN_FAILED;
        }
    };
    if let Err(e) = std::fs::write(&a.out, text) {
        eprintln!("chatload: cannot write {}: {e}", a.out.display());
        return RUN_FAILED;
    }
    println!(
        "{}: {} users, {}, {} on {}{}",
        a.out.display(),
        ids.users.len(),
        describe_rooms(group_rooms, "group"),
        describe_rooms(direct_rooms, "direct"),
        chatload::secrets::redact_url(&a.homeserver),
        pushed.map_or(String::new(), |n| format!(
            " ({n} pushes of the set-up's events answered at the webhook)"
        ))
    );
    if group_rooms.without_alias + direct_rooms.without_alias > 0 {
        eprintln!(
            "chatload: the application service's registration reserves no room aliases, so these rooms have none and a second set-up makes them again; add `aliases: [{{exclusive: true, regex: '{}.*'}}]` to its namespaces to have them found instead",
            ALIAS_PREFIX.replace('.', "\\.")
        );
    }
    PASSED
}

/// "5 group rooms made", "30 direct rooms found from an earlier set-up", or each part named.
fn describe_rooms(c: RoomCounts, kind: &str) -> String {
    let parts: Vec<String> = [
        (c.made, "made"),
        (c.found, "found from an earlier set-up"),
        (c.without_alias, "made without an alias"),
    ]
    .iter()
    .filter(|(n, _)| *n > 0)
    .map(|(n, how)| format!("{n} {how}"))
    .collect();
    let total = c.made + c.found + c.without_alias;
    match parts.as_slice() {
        [] => format!("0 {kind} rooms"),
        [one] => format!(
            "{total} {kind} rooms {}",
            one.split_once(' ').map_or("", |p| p.1)
        ),
        _ => format!("{total} {kind} rooms ({})", parts.join(", ")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn room_counts_read_as_one_phrase() {
        let c = |made, found, without_alias| RoomCounts {
            made,
            found,
            without_alias,
        };
        assert_eq!(describe_rooms(c(0, 0, 0), "group"), "0 group rooms");
        assert_eq!(describe_rooms(c(5, 0, 0), "group"), "5 group rooms made");
        assert_eq!(
            describe_rooms(c(0, 30, 0), "direct"),
            "30 direct rooms found from an earlier set-up"
        );
        assert_eq!(
            describe_rooms(c(2, 3, 0), "direct"),
            "5 direct rooms (2 made, 3 found from an earlier set-up)"
        );
        assert_eq!(
            describe_rooms(c(0, 0, 4), "group"),
            "4 group rooms made without an alias"
        );
    }
}
