//! `chatload setup matrix`: a Matrix homeserver made ready for a scenario's population
//! through the application-service API (one `as_token` acting as each user of its
//! namespace): every user registered, one room per group with its members joined, one room
//! of two per contact pair; the ids written for `[target.http] ids`. Running it again makes
//! nothing twice: an account that exists is used as it is, and each room carries an alias
//! made from its kind and the ids of its members (`#chatload.g3.<digest>:server`), so a room
//! of the same members is found by its alias, and members who left or never joined are
//! invited and joined again. Requests go a bounded number at a time, and each answer is
//! read up to a bound. While it works, the homeserver pushes the events it makes (joins,
//! invites) to the application service's URL: `sink` answers them there, so the homeserver
//! does not mark the service as down and hold back the run's deliveries for minutes.

use crate::scenario::ids::IdFile;
use crate::workload::Population;
use futures_util::StreamExt;
use serde_json::{Value, json};
use std::sync::atomic::Ordering::Relaxed;

/// Requests under way at once.
const CONCURRENCY: usize = 8;
/// The longest answer read from the homeserver.
const MAX_ANSWER: usize = 64 << 10;
/// How long a connection to the homeserver may take to open (TCP, and TLS for https), at
/// most: half the request's own timeout when that is shorter, so a connection that never
/// opens is always told apart from an answer that never came.
const CONNECT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

fn connect_timeout(request_timeout: std::time::Duration) -> std::time::Duration {
    CONNECT_TIMEOUT.min(request_timeout / 2)
}

/// One room the set-up wants: who makes it, who is in it, what it is called.
struct RoomPlan<'a> {
    creator: u32,
    members: &'a [u32],
    /// `g3` for group 3, `u4-u9` for the direct room of users 4 and 9.
    name: String,
    direct: bool,
}

/// Whether the set-up made a room or found it from an earlier run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Made {
    New,
    Found,
    /// Made without an alias, because the registration reserves none for the service: a
    /// later set-up cannot find it and makes another.
    NewWithoutAlias,
}

/// How many rooms a set-up made and how many it found already there.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct RoomCounts {
    pub made: usize,
    pub found: usize,
    pub without_alias: usize,
}

impl RoomCounts {
    fn add(&mut self, m: Made) {
        match m {
            Made::New => self.made += 1,
            Made::Found => self.found += 1,
            Made::NewWithoutAlias => self.without_alias += 1,
        }
    }
}

/// The alias namespace a registration gives the set-up (README, Matrix).
pub const ALIAS_PREFIX: &str = "#chatload.";

pub struct MatrixSetup {
    /// The homeserver's client API base, e.g. http://127.0.0.1:8008.
    pub homeserver: String,
    /// How long one request may take, its connection included (`--timeout`).
    request_timeout: std::time::Duration,
    /// Every request's client: a homeserver that accepts and never answers ends the set-up
    /// with a sentence rather than holding it for ever.
    http: reqwest::Client,
    /// The application service's token (its registration's `as_token`).
    pub as_token: String,
    /// The homeserver's name (the part after `:` in user ids).
    pub server_name: String,
    /// Each user's local part, `{user}` replaced by its number (default "u{user}"); it must
    /// fall in the application service's user namespace.
    pub localpart: String,
    /// Set once the homeserver refuses an alias as outside the service's namespace, so the
    /// other rooms are made without one at once.
    pub aliases_refused: std::sync::atomic::AtomicBool,
}

/// One sentence for a request that got no answer: no connection at all ("not reachable"
/// only then), a TLS handshake that failed or did not finish, a connection without an
/// answer in time, or what else went wrong beneath reqwest's words.
fn unanswered(what: &str, e: &reqwest::Error, timeout: std::time::Duration) -> String {
    use crate::transport::http_error::{classify, describe, innermost};
    let secure = e.url().is_some_and(|u| u.scheme() == "https");
    let connect = connect_timeout(timeout);
    if e.is_connect() && classify(e) == crate::metrics::ErrorKind::Tls {
        format!(
            "cannot {what}: the homeserver answered, but the TLS handshake failed ({}); check its certificate and --homeserver",
            innermost(e)
        )
    } else if e.is_connect() && classify(e) == crate::metrics::ErrorKind::ConnectionReset {
        format!(
            "cannot {what}: the homeserver accepted the connection and then closed it before it was set up ({}); is --homeserver right (http or https)?",
            innermost(e)
        )
    } else if e.is_connect() && e.is_timeout() && secure {
        // TCP and TLS share the connection's timeout: the TCP part may have been accepted.
        format!(
            "cannot {what}: no connection to the homeserver (TCP, then TLS) was made within {connect:?}; is it running, and is --homeserver right?"
        )
    } else if e.is_connect() {
        let why = if e.is_timeout() {
            format!("no connection within {connect:?}")
        } else {
            innermost(e)
        };
        format!(
            "cannot {what}: the homeserver is not reachable ({why}); start it or check --homeserver"
        )
    } else if e.is_timeout() {
        format!(
            "cannot {what}: the homeserver accepted the connection, but its answer did not come within {timeout:?}; is it running (not stopped or overloaded)? A slow one may need a longer --timeout"
        )
    } else {
        format!("cannot {what}: {}", describe(e))
    }
}

fn encode(path_part: &str) -> String {
    percent_encoding::utf8_percent_encode(path_part, percent_encoding::NON_ALPHANUMERIC).to_string()
}

/// What the homeserver said when a request did not succeed: one sentence, no token.
fn refusal(what: &str, status: reqwest::StatusCode, body: &[u8]) -> String {
    format!(
        "the homeserver refused to {what}: HTTP {status} {}",
        crate::secrets::excerpt(&String::from_utf8_lossy(body), 200)
    )
}

impl MatrixSetup {
    pub fn new(
        homeserver: String,
        as_token: String,
        server_name: String,
        localpart: String,
        request_timeout: std::time::Duration,
    ) -> Result<MatrixSetup, String> {
        let http = reqwest::Client::builder()
            .connect_timeout(connect_timeout(request_timeout))
            .timeout(request_timeout)
            .build()
            .map_err(|e| format!("cannot make an HTTP client: {e}"))?;
        Ok(MatrixSetup {
            homeserver,
            request_timeout,
            http,
            as_token,
            server_name,
            localpart,
            aliases_refused: Default::default(),
        })
    }

    fn user_id(&self, u: u32) -> String {
        format!(
            "@{}:{}",
            self.localpart.replace("{user}", &u.to_string()),
            self.server_name
        )
    }

    /// One request as `user` (or as the application service itself); the answer's JSON.
    /// An answer whose `errcode` is in `expected` is returned, not refused: it is news the
    /// caller acts on (an account or alias in use, a join that needs an invite first).
    #[allow(clippy::too_many_arguments)]
    async fn call(
        &self,
        http: &reqwest::Client,
        method: reqwest::Method,
        path: &str,
        user: Option<u32>,
        body: Value,
        what: &str,
        expected: &[&str],
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
        let timeout = self.request_timeout;
        let mut resp = req
            .send()
            .await
            .map_err(|e| unanswered(what, &e, timeout))?;
        let status = resp.status();
        let mut bytes = Vec::new();
        while let Some(chunk) = resp
            .chunk()
            .await
            .map_err(|e| unanswered(what, &e, timeout))?
        {
            if bytes.len() + chunk.len() > MAX_ANSWER {
                return Err(format!(
                    "cannot {what}: the homeserver answered more than {MAX_ANSWER} bytes"
                ));
            }
            bytes.extend_from_slice(&chunk);
        }
        let v = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        let errcode = v["errcode"].as_str().unwrap_or("");
        if status.is_success() || (!errcode.is_empty() && expected.contains(&errcode)) {
            Ok((status, v))
        } else {
            Err(refusal(what, status, &bytes))
        }
    }

    /// The alias local part of `plan`'s room: its name and a digest of its members' user
    /// ids, so a room of other members (another scenario, another localpart) is another
    /// alias.
    fn alias_localpart(&self, plan: &RoomPlan<'_>) -> String {
        let mut ids: Vec<String> = plan.members.iter().map(|m| self.user_id(*m)).collect();
        ids.sort();
        let digest = ring::digest::digest(&ring::digest::SHA256, ids.join("\n").as_bytes());
        let hex: String = digest.as_ref()[..8]
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        format!("{}{}.{hex}", &ALIAS_PREFIX[1..], plan.name)
    }

    /// The room for `plan`, made with its members invited and joined, or found by its alias
    /// from an earlier run and its members joined again where they are not; its id.
    async fn room(
        &self,
        http: &reqwest::Client,
        plan: RoomPlan<'_>,
    ) -> Result<(String, Made), String> {
        let RoomPlan {
            creator,
            members,
            ref name,
            direct,
        } = plan;
        let invite: Vec<String> = members
            .iter()
            .filter(|m| **m != creator)
            .map(|m| self.user_id(*m))
            .collect();
        let alias = self.alias_localpart(&plan);
        let creating = format!("create room {name}");
        let create = |alias: Option<&str>| {
            let mut body = json!({"preset": "private_chat", "name": name, "invite": invite,
                                  "is_direct": direct});
            if let Some(a) = alias {
                body["room_alias_name"] = json!(a);
            }
            self.call(
                http,
                reqwest::Method::POST,
                "/_matrix/client/v3/createRoom",
                Some(creator),
                body,
                &creating,
                &["M_ROOM_IN_USE", "M_EXCLUSIVE"],
            )
        };
        let mut v = Value::Null;
        if !self.aliases_refused.load(Relaxed) {
            v = create(Some(&alias)).await?.1;
            if v["errcode"] == "M_EXCLUSIVE" {
                self.aliases_refused.store(true, Relaxed);
            }
        }
        let made = if v["errcode"] == "M_ROOM_IN_USE" {
            Made::Found
        } else if self.aliases_refused.load(Relaxed) {
            v = create(None).await?.1;
            if v["errcode"].is_string() {
                return Err(format!("the homeserver refused to create room {name}: {v}"));
            }
            Made::NewWithoutAlias
        } else {
            Made::New
        };
        let room = match made {
            Made::New | Made::NewWithoutAlias => {
                v["room_id"].as_str().map(str::to_string).ok_or_else(|| {
                    format!("the homeserver made room {name} but named no room_id: {v}")
                })?
            }
            Made::Found => {
                let path = format!(
                    "/_matrix/client/v3/directory/room/{}",
                    encode(&format!("#{alias}:{}", self.server_name))
                );
                let (_, v) = self
                    .call(
                        http,
                        reqwest::Method::GET,
                        &path,
                        Some(creator),
                        Value::Null,
                        &format!("look up room {name} by its alias #{alias}"),
                        &[],
                    )
                    .await?;
                v["room_id"].as_str().map(str::to_string).ok_or_else(|| {
                    format!("the homeserver knows the alias #{alias} but named no room_id: {v}")
                })?
            }
        };
        let join_path = format!("/_matrix/client/v3/rooms/{}/join", encode(&room));
        for m in members.iter().filter(|m| **m != creator) {
            let what = format!("join user {m} to room {name}");
            // A found room's member may have left, or a run stopped before its join: the
            // private room then refuses the join until the creator invites again.
            let expected: &[&str] = match made {
                Made::New | Made::NewWithoutAlias => &[],
                Made::Found => &["M_FORBIDDEN"],
            };
            let join = |expected| {
                self.call(
                    http,
                    reqwest::Method::POST,
                    &join_path,
                    Some(*m),
                    json!({}),
                    &what,
                    expected,
                )
            };
            if join(expected).await?.0.is_success() {
                continue;
            }
            self.call(
                http,
                reqwest::Method::POST,
                &format!("/_matrix/client/v3/rooms/{}/invite", encode(&room)),
                Some(creator),
                json!({"user_id": self.user_id(*m)}),
                &format!("invite user {m} to room {name} again"),
                &[],
            )
            .await?;
            join(&[]).await?;
        }
        Ok((room, made))
    }

    /// The homeserver's own name, from who the application service is (`@bot:name`).
    pub async fn server_name(&self) -> Result<String, String> {
        let (_, v) = self
            .call(
                &self.http,
                reqwest::Method::GET,
                "/_matrix/client/v3/account/whoami",
                None,
                Value::Null,
                "say who the application service is",
                &[],
            )
            .await?;
        v["user_id"]
            .as_str()
            .and_then(|id| id.split_once(':'))
            .map(|(_, name)| name.to_string())
            .ok_or_else(|| format!("the homeserver's whoami named no user id: {v}"))
    }

    /// Registers every user, makes or finds every room, and returns the ids and how many
    /// rooms of each kind were made and found.
    pub async fn provision(
        &self,
        population: &Population,
    ) -> Result<(IdFile, RoomCounts, RoomCounts), String> {
        let http = &self.http;
        let mut ids = IdFile::default();
        let registered: Vec<Result<(), String>> = futures_util::stream::iter(0..population.users())
            .map(|u| {
                async move {
                    self.call(
                        http,
                        reqwest::Method::POST,
                        "/_matrix/client/v3/register",
                        None,
                        json!({"type": "m.login.application_service", "username": self.localpart.replace("{user}", &u.to_string())}),
                        &format!("register user {u}"),
                        // An account that exists already is used as it is.
                        &["M_USER_IN_USE"],
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
        type GroupRoom = Result<(u32, String, Made), String>;
        let made: Vec<GroupRoom> = futures_util::stream::iter(groups)
            .map(|(g, members)| async move {
                let creator = *members.first().ok_or(format!("group {g} has no members"))?;
                let plan = RoomPlan {
                    creator,
                    members: &members,
                    name: format!("g{g}"),
                    direct: false,
                };
                self.room(http, plan).await.map(|(room, m)| (g, room, m))
            })
            .buffer_unordered(CONCURRENCY)
            .collect()
            .await;
        let mut group_rooms = RoomCounts::default();
        for r in made {
            let (g, room, m) = r?;
            ids.groups.insert(g, room);
            group_rooms.add(m);
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
        type DirectRoom = Result<((u32, u32), String, Made), String>;
        let made: Vec<DirectRoom> = futures_util::stream::iter(pairs)
            .map(|(a, b)| async move {
                let plan = RoomPlan {
                    creator: a,
                    members: &[a, b],
                    name: format!("u{a}-u{b}"),
                    direct: true,
                };
                self.room(http, plan)
                    .await
                    .map(|(room, m)| ((a, b), room, m))
            })
            .buffer_unordered(CONCURRENCY)
            .collect()
            .await;
        let mut direct_rooms = RoomCounts::default();
        for r in made {
            let ((a, b), room, m) = r?;
            ids.direct.insert(format!("{a}-{b}"), room);
            direct_rooms.add(m);
        }
        Ok((ids, group_rooms, direct_rooms))
    }
}

/// Connections the push sink keeps open at once: a homeserver pushes over a handful; past
/// this a connection is closed on arrival, so whatever else reaches the port cannot take the
/// process's descriptors or memory one connection at a time.
pub const SINK_CONNECTIONS: usize = 64;

/// How long a connection may take to send a request's header, also between the requests of
/// a kept-alive one (longer than homeservers keep idle connections: Synapse's pool, 2 min).
const SINK_HEADER_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(180);

/// Takes what the homeserver pushes to the application service's URL during the set-up and
/// answers each push `200 {}` without reading its body; returns how many it took when `stop`
/// resolves and the homeserver has been quiet for `quiet`. At most [`SINK_CONNECTIONS`] are
/// open at once, and all of them are closed when it returns.
pub async fn sink(
    listen: std::net::SocketAddr,
    quiet: std::time::Duration,
    stop: impl std::future::Future<Output = ()>,
) -> std::io::Result<u64> {
    use std::sync::Arc;
    use std::sync::atomic::AtomicU64;
    let listener = chatload_protocol::listen::bind(listen).await?;
    let taken = Arc::new(AtomicU64::new(0));
    let last = Arc::new(std::sync::Mutex::new(tokio::time::Instant::now()));
    let (t, l) = (taken.clone(), last.clone());
    let open = Arc::new(tokio::sync::Semaphore::new(SINK_CONNECTIONS));
    let server = tokio::spawn(async move {
        // Dropped with this task when the sink returns, which ends every connection.
        let mut connections = tokio::task::JoinSet::new();
        loop {
            let stream = tokio::select! {
                accepted = listener.accept() => accepted,
                Some(_) = connections.join_next() => continue,
            };
            let Ok((stream, _)) = stream else {
                // Out of descriptors, say: the next accept may succeed.
                tokio::time::sleep(std::time::Duration::from_millis(10)).await;
                continue;
            };
            let Ok(permit) = open.clone().try_acquire_owned() else {
                continue;
            };
            let (t, l) = (t.clone(), l.clone());
            connections.spawn(async move {
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
                    .timer(hyper_util::rt::TokioTimer::new())
                    .header_read_timeout(SINK_HEADER_TIMEOUT)
                    .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                    .await;
                drop(permit);
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};
    use std::time::Duration;

    fn setup_at(port: u16) -> MatrixSetup {
        MatrixSetup::new(
            format!("http://127.0.0.1:{port}"),
            "token".into(),
            String::new(),
            "u{user}".into(),
            Duration::from_millis(800),
        )
        .unwrap()
    }

    /// A homeserver that accepts and never answers, one whose listening queue is full (the
    /// kernel drops the connection request), and a closed port: each ends the set-up within
    /// its timeout, said as what happened — never "not reachable" when a connection was made.
    #[tokio::test]
    async fn a_homeserver_that_does_not_answer_ends_the_set_up_with_what_happened() {
        let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let silent_port = silent.local_addr().unwrap().port();
        let held = tokio::spawn(async move {
            let mut open = Vec::new();
            while let Ok((s, _)) = silent.accept().await {
                open.push(s);
            }
        });
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket.bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let full = socket.listen(1).unwrap();
        let full_addr = full.local_addr().unwrap();
        let queued: Vec<_> = (0..3)
            .filter_map(|_| {
                std::net::TcpStream::connect_timeout(&full_addr, Duration::from_millis(300)).ok()
            })
            .collect();
        let closed_port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .unwrap()
            .port();
        let said = |port| async move {
            let started = std::time::Instant::now();
            let e = tokio::time::timeout(Duration::from_secs(5), setup_at(port).server_name())
                .await
                .expect("the set-up ends by itself")
                .expect_err("nothing answered");
            assert!(started.elapsed() < Duration::from_secs(2), "{e}");
            e
        };
        assert_eq!(
            said(silent_port).await,
            "cannot say who the application service is: the homeserver accepted the connection, but its answer did not come within 800ms; is it running (not stopped or overloaded)? A slow one may need a longer --timeout"
        );
        assert_eq!(
            said(full_addr.port()).await,
            "cannot say who the application service is: the homeserver is not reachable (no connection within 400ms); start it or check --homeserver"
        );
        let refused = said(closed_port).await;
        assert!(
            refused.contains("the homeserver is not reachable (Connection refused"),
            "{refused}"
        );
        assert!(!refused.contains("token"), "{refused}");
        held.abort();
        drop((queued, full));
    }

    /// An https:// homeserver whose port answers the TLS hello with plain HTTP, closes at
    /// once, or says nothing: something answered each time, so none is "not reachable".
    #[tokio::test]
    async fn an_https_homeserver_that_fails_its_tls_says_what_answered() {
        async fn answering(answer: &'static [u8], close: bool) -> u16 {
            use tokio::io::{AsyncReadExt, AsyncWriteExt};
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let port = listener.local_addr().unwrap().port();
            tokio::spawn(async move {
                let mut open = Vec::new();
                while let Ok((mut s, _)) = listener.accept().await {
                    let mut hello = [0u8; 512];
                    let _ = s.read(&mut hello).await;
                    let _ = s.write_all(answer).await;
                    if !close {
                        open.push(s);
                    }
                }
            });
            port
        }
        let said = |port: u16| async move {
            let mut setup = setup_at(port);
            setup.homeserver = format!("https://127.0.0.1:{port}");
            tokio::time::timeout(Duration::from_secs(5), setup.server_name())
                .await
                .expect("the set-up ends by itself")
                .expect_err("no TLS")
        };
        let plain = said(answering(b"HTTP/1.1 400 Bad Request\r\n\r\n", true).await).await;
        assert!(
            plain.starts_with("cannot say who the application service is: the homeserver answered, but the TLS handshake failed ("),
            "{plain}"
        );
        let closed = said(answering(b"", true).await).await;
        assert!(
            closed.contains(
                "the homeserver accepted the connection and then closed it before it was set up"
            ),
            "{closed}"
        );
        let silent = said(answering(b"", false).await).await;
        assert_eq!(
            silent,
            "cannot say who the application service is: no connection to the homeserver (TCP, then TLS) was made within 400ms; is it running, and is --homeserver right?"
        );
        for text in [plain, closed, silent] {
            assert!(!text.contains("not reachable"), "{text}");
        }
    }

    /// Connections past the bound are closed on arrival, those within it are answered, and
    /// none outlives the sink.
    #[tokio::test]
    async fn the_push_sink_keeps_a_bounded_number_of_connections() {
        let probe = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = probe.local_addr().unwrap();
        drop(probe);
        let (done, stopped) = tokio::sync::oneshot::channel::<()>();
        let sink = tokio::spawn(sink(addr, Duration::from_millis(50), async move {
            let _ = stopped.await;
        }));
        let opened = tokio::task::spawn_blocking(move || {
            let mut held = Vec::new();
            for _ in 0..50 {
                if let Ok(s) = std::net::TcpStream::connect(addr) {
                    held.push(s);
                    break;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            while held.len() < SINK_CONNECTIONS + 8 {
                held.push(std::net::TcpStream::connect(addr).unwrap());
            }
            // The sink takes them in order: the last eight find it full.
            std::thread::sleep(Duration::from_millis(300));
            let mut closed = 0;
            for s in &mut held {
                s.set_read_timeout(Some(Duration::from_millis(20))).unwrap();
                let mut byte = [0u8; 1];
                if matches!(s.read(&mut byte), Ok(0)) {
                    closed += 1;
                }
            }
            let first = &mut held[0];
            first
                .set_read_timeout(Some(Duration::from_secs(5)))
                .unwrap();
            write!(
                first,
                "PUT /transactions/1 HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\n{{}}"
            )
            .unwrap();
            let mut answer = [0u8; 12];
            first.read_exact(&mut answer).unwrap();
            (held, closed, answer)
        })
        .await
        .unwrap();
        let (mut held, closed, answer) = opened;
        assert_eq!(
            closed, 8,
            "connections past {SINK_CONNECTIONS} are closed on arrival"
        );
        assert_eq!(&answer, b"HTTP/1.1 200");
        let _ = done.send(());
        let taken = tokio::time::timeout(Duration::from_secs(10), sink)
            .await
            .unwrap();
        assert_eq!(taken.unwrap().unwrap(), 1);
        let still_open = tokio::task::spawn_blocking(move || {
            let mut byte = [0u8; 64];
            let s = &mut held[1];
            s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
            s.read(&mut byte).map(|n| n > 0)
        })
        .await
        .unwrap();
        assert!(
            matches!(still_open, Ok(false)),
            "the sink's connections end with it"
        );
    }
}
