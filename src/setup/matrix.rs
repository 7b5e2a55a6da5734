//! `chatload setup matrix`: a Matrix homeserver made ready for a scenario's population
//! through the application-service API (one `as_token` acting as each user of its
//! namespace): every user registered, one room per group with its members joined, one room
//! of two per contact pair; the ids written for `[target.http] ids`. Accounts and rooms that
//! exist already are used as they are only for users (a second run registers nobody new);
//! rooms are made anew each time. Requests go a bounded number at a time, and each answer is
//! read up to a bound. While it works, the homeserver pushes the events it makes (joins,
//! invites) to the application service's URL: `sink` answers them there, so the homeserver
//! does not mark the service as down and hold back the run's deliveries for minutes.

use crate::scenario::ids::IdFile;
use crate::workload::Population;
use futures_util::StreamExt;
use serde_json::{Value, json};

/// Requests under way at once.
const CONCURRENCY: usize = 8;
/// The longest answer read from the homeserver.
const MAX_ANSWER: usize = 64 << 10;

pub struct MatrixSetup {
    /// The homeserver's client API base, e.g. http://127.0.0.1:8008.
    pub homeserver: String,
    /// The application service's token (its registration's `as_token`).
    pub as_token: String,
    /// The homeserver's name (the part after `:` in user ids).
    pub server_name: String,
    /// Each user's local part, `{user}` replaced by its number (default "u{user}"); it must
    /// fall in the application service's user namespace.
    pub localpart: String,
}

/// What the homeserver said when a request did not succeed: one sentence, no token.
fn refusal(what: &str, status: reqwest::StatusCode, body: &[u8]) -> String {
    format!(
        "the homeserver refused to {what}: HTTP {status} {}",
        crate::secrets::excerpt(&String::from_utf8_lossy(body), 200)
    )
}

impl MatrixSetup {
    fn user_id(&self, u: u32) -> String {
        format!(
            "@{}:{}",
            self.localpart.replace("{user}", &u.to_string()),
            self.server_name
        )
    }

    /// One request as `user` (or as the application service itself); the answer's JSON.
    async fn call(
        &self,
        http: &reqwest::Client,
        method: reqwest::Method,
        path: &str,
        user: Option<u32>,
        body: Value,
        what: &str,
    ) -> Result<(reqwest::StatusCode, Value), String> {
        let mut url =
            reqwest::Url::parse(&format!("{}{path}", self.homeserver.trim_end_matches('/')))
                .map_err(|e| format!("{path}: {e}"))?;
        if let Some(u) = user {
            url.query_pairs_mut()
                .append_pair("user_id", &self.user_id(u));
        }
        let mut req = http.request(method, url).bearer_auth(&self.as_token);
        if !body.is_null() {
            req = req.json(&body);
        }
        let mut resp = req
            .send()
            .await
            .map_err(|e| format!("cannot {what}: {}", crate::secrets::redact(&e.to_string())))?;
        let status = resp.status();
        let mut bytes = Vec::new();
        while let Some(chunk) = resp
            .chunk()
            .await
            .map_err(|e| format!("cannot {what}: {e}"))?
        {
            if bytes.len() + chunk.len() > MAX_ANSWER {
                return Err(format!(
                    "cannot {what}: the homeserver answered more than {MAX_ANSWER} bytes"
                ));
            }
            bytes.extend_from_slice(&chunk);
        }
        let v = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        // An account that exists already is used as it is.
        if status.is_success() || v["errcode"] == "M_USER_IN_USE" {
            Ok((status, v))
        } else {
            Err(refusal(what, status, &bytes))
        }
    }

    /// A room made by `creator` with `members` invited and joined; its id.
    async fn room(
        &self,
        http: &reqwest::Client,
        creator: u32,
        members: &[u32],
        name: String,
        direct: bool,
    ) -> Result<String, String> {
        let invite: Vec<String> = members
            .iter()
            .filter(|m| **m != creator)
            .map(|m| self.user_id(*m))
            .collect();
        let (_, v) = self
            .call(
                http,
                reqwest::Method::POST,
                "/_matrix/client/v3/createRoom",
                Some(creator),
                json!({"preset": "private_chat", "name": name, "invite": invite, "is_direct": direct}),
                &format!("create room {name}"),
            )
            .await?;
        let room = v["room_id"]
            .as_str()
            .ok_or_else(|| format!("the homeserver made room {name} but named no room_id: {v}"))?
            .to_string();
        for m in members.iter().filter(|m| **m != creator) {
            let path = format!(
                "/_matrix/client/v3/rooms/{}/join",
                percent_encoding::utf8_percent_encode(&room, percent_encoding::NON_ALPHANUMERIC)
            );
            self.call(
                http,
                reqwest::Method::POST,
                &path,
                Some(*m),
                json!({}),
                &format!("join user {m} to room {name}"),
            )
            .await?;
        }
        Ok(room)
    }

    /// The homeserver's own name, from who the application service is (`@bot:name`).
    pub async fn server_name(&self) -> Result<String, String> {
        let http = reqwest::Client::new();
        let (_, v) = self
            .call(
                &http,
                reqwest::Method::GET,
                "/_matrix/client/v3/account/whoami",
                None,
                Value::Null,
                "say who the application service is",
            )
            .await?;
        v["user_id"]
            .as_str()
            .and_then(|id| id.split_once(':'))
            .map(|(_, name)| name.to_string())
            .ok_or_else(|| format!("the homeserver's whoami named no user id: {v}"))
    }

    /// Registers every user, makes every room, and returns the ids.
    pub async fn provision(&self, population: &Population) -> Result<IdFile, String> {
        let http = reqwest::Client::builder()
            .timeout(std::time::Duration::from_secs(30))
            .build()
            .map_err(|e| e.to_string())?;
        let mut ids = IdFile::default();
        let registered: Vec<Result<(), String>> = futures_util::stream::iter(0..population.users())
            .map(|u| {
                let http = &http;
                async move {
                    self.call(
                        http,
                        reqwest::Method::POST,
                        "/_matrix/client/v3/register",
                        None,
                        json!({"type": "m.login.application_service", "username": self.localpart.replace("{user}", &u.to_string())}),
                        &format!("register user {u}"),
                    )
                    .await
                    .map(|_| ())
                }
            })
            .buffer_unordered(CONCURRENCY)
            .collect()
            .await;
        registered.into_iter().collect::<Result<(), String>>()?;
        for u in 0..population.users() {
            ids.users.insert(u, self.user_id(u));
        }
        let groups: Vec<(u32, Vec<u32>)> = population
            .groups()
            .iter()
            .enumerate()
            .map(|(g, m)| (g as u32, m.to_vec()))
            .collect();
        let made: Vec<Result<(u32, String), String>> = futures_util::stream::iter(groups)
            .map(|(g, members)| {
                let http = &http;
                async move {
                    let creator = *members.first().ok_or(format!("group {g} has no members"))?;
                    self.room(http, creator, &members, format!("g{g}"), false)
                        .await
                        .map(|room| (g, room))
                }
            })
            .buffer_unordered(CONCURRENCY)
            .collect()
            .await;
        for r in made {
            let (g, room) = r?;
            ids.groups.insert(g, room);
        }
        // Each pair once, however the contact lists name it.
        let pairs: std::collections::BTreeSet<(u32, u32)> = (0..population.users())
            .flat_map(|u| {
                population
                    .contacts(u)
                    .iter()
                    .filter(move |c| **c != u)
                    .map(move |c| crate::scenario::ids::direct_key(u, *c))
            })
            .collect();
        type Made = Result<((u32, u32), String), String>;
        let made: Vec<Made> = futures_util::stream::iter(pairs)
            .map(|(a, b)| {
                let http = &http;
                async move {
                    self.room(http, a, &[a, b], format!("u{a}-u{b}"), true)
                        .await
                        .map(|room| ((a, b), room))
                }
            })
            .buffer_unordered(CONCURRENCY)
            .collect()
            .await;
        for r in made {
            let ((a, b), room) = r?;
            ids.direct.insert(format!("{a}-{b}"), room);
        }
        Ok(ids)
    }
}

/// Takes what the homeserver pushes to the application service's URL during the set-up and
/// answers each push `200 {}`; returns how many it took when `stop` resolves and the
/// homeserver has been quiet for `quiet`.
pub async fn sink(
    listen: std::net::SocketAddr,
    quiet: std::time::Duration,
    stop: impl std::future::Future<Output = ()>,
) -> std::io::Result<u64> {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
    let listener = tokio::net::TcpListener::bind(listen).await?;
    let taken = Arc::new(AtomicU64::new(0));
    let last = Arc::new(std::sync::Mutex::new(tokio::time::Instant::now()));
    let (t, l) = (taken.clone(), last.clone());
    let server = tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let (t, l) = (t.clone(), l.clone());
            tokio::spawn(async move {
                let service = hyper::service::service_fn(move |_req| {
                    t.fetch_add(1, Relaxed);
                    *l.lock().unwrap_or_else(|p| p.into_inner()) = tokio::time::Instant::now();
                    async {
                        Ok::<_, std::convert::Infallible>(hyper::Response::new(
                            http_body_util::Full::new(bytes::Bytes::from_static(b"{}")),
                        ))
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    stop.await;
    // The last joins' events arrive after the last answer: wait for a quiet spell, at most
    // a bounded time.
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let since = last.lock().unwrap_or_else(|p| p.into_inner()).elapsed();
        if since >= quiet || tokio::time::Instant::now() >= deadline {
            break;
        }
        tokio::time::sleep(quiet - since).await;
    }
    server.abort();
    Ok(taken.load(Relaxed))
}
