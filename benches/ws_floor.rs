//! The floor under `benches/ws-vs-k6.sh`: the same one-to-one chat (each message sent,
//! acknowledged by the server, delivered, delivery-acknowledged, and its receipt taken back)
//! with as little as a client can do around the system calls — one thread on raw `epoll`, one
//! `timerfd` for the send schedule, a frame read with one `recv` and written with one
//! `send`, the protocol's own builders and parser, and no runtime, measurement, ledger or
//! report. Whatever this spends per message is what any client pays on this machine and
//! kernel for that traffic; the script prints it beside k6 and chatload so the distance
//! between chatload and that floor is read in one run.
//!
//! It is a benchmark aid, not a tool: it stops at the first thing it does not expect (a
//! close, a frame it cannot read, a full socket buffer) with that sentence on stderr.
//!
//!   cargo build --release --example ws-floor
//!   target/release/examples/ws-floor 127.0.0.1:7083 RATE USERS SECS

use chatload_protocol::{Recipient, ack, decode, hello, send};
use rand::{Rng, SeedableRng};
use rand_distr::{Distribution, Exp};
use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

const TIMER_TOKEN: u64 = u64::MAX;
const LOG_IN_TIMEOUT: Duration = Duration::from_secs(5);
const BODY: &str = "0123456789012345678901234567890123456789012345678901234567890123";

struct Connection {
    stream: TcpStream,
    inbox: Vec<u8>,
    next_id: u64,
}

#[derive(Default)]
struct Counts {
    sent: u64,
    acknowledged: u64,
    delivered: u64,
    receipts: u64,
    /// Sent more than 10 ms after their time (chatload's `late_sends`).
    late: u64,
}

fn main() {
    if let Err(why) = run() {
        eprintln!("ws-floor: {why}");
        std::process::exit(1);
    }
}

fn run() -> Result<(), String> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [address, rate, users, secs] = args.as_slice() else {
        return Err("usage: ws-floor HOST:PORT RATE USERS SECS".into());
    };
    let number = |s: &String| s.parse::<f64>().map_err(|e| format!("{s}: {e}"));
    let (rate, users, secs) = (number(rate)?, number(users)? as usize, number(secs)?);
    if users < 2 || rate <= 0.0 {
        return Err("needs at least two users and a positive rate".into());
    }

    let mut connections = Vec::with_capacity(users);
    for user in 0..users {
        connections.push(log_in(address, user as u32)?);
    }
    let epoll = unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) };
    check(epoll, "epoll_create1")?;
    for (user, connection) in connections.iter().enumerate() {
        connection
            .stream
            .set_nonblocking(true)
            .map_err(|e| e.to_string())?;
        watch(
            epoll,
            connection.stream.as_raw_fd(),
            libc::EPOLLIN as u32,
            user as u64,
        )?;
    }
    let timer = unsafe {
        libc::timerfd_create(
            libc::CLOCK_MONOTONIC,
            libc::TFD_NONBLOCK | libc::TFD_CLOEXEC,
        )
    };
    check(timer, "timerfd_create")?;
    // Edge-triggered and never read, as chatload's pacer: each expiry is an edge of its own.
    watch(
        epoll,
        timer,
        (libc::EPOLLIN | libc::EPOLLET) as u32,
        TIMER_TOKEN,
    )?;

    let mut rng = rand_pcg::Pcg64::seed_from_u64(1);
    let gaps = Exp::new(rate).map_err(|e| e.to_string())?;
    let start = Instant::now();
    let stop_sending = start + Duration::from_secs_f64(secs);
    let give_up = stop_sending + Duration::from_secs(5);
    let mut next_send = start;
    let mut counts = Counts::default();
    let mut events = vec![libc::epoll_event { events: 0, u64: 0 }; 256];
    let mut out = Vec::with_capacity(256);
    let mut armed_for = None;

    loop {
        let now = Instant::now();
        while next_send <= now && next_send < stop_sending {
            let from = rng.random_range(0..users);
            let to = (from + rng.random_range(1..users)) % users;
            let connection = &mut connections[from];
            connection.next_id += 1;
            let text = send(connection.next_id, Recipient::User(to as u32), 0, 0, BODY);
            write_frame(&mut connection.stream, &mut out, text.as_bytes())?;
            counts.sent += 1;
            if now.duration_since(next_send) > Duration::from_millis(10) {
                counts.late += 1;
            }
            next_send += Duration::from_secs_f64(gaps.sample(&mut rng));
        }
        if now >= give_up || (now >= stop_sending && counts.receipts == counts.sent) {
            break;
        }
        if next_send < stop_sending && armed_for != Some(next_send) {
            arm(timer, next_send.duration_since(now))?;
            armed_for = Some(next_send);
        }
        let ready =
            unsafe { libc::epoll_wait(epoll, events.as_mut_ptr(), events.len() as i32, 100) };
        if ready < 0 {
            let error = std::io::Error::last_os_error();
            if error.kind() == ErrorKind::Interrupted {
                continue;
            }
            return Err(format!("epoll_wait: {error}"));
        }
        for event in &events[..ready as usize] {
            let token = event.u64;
            if token == TIMER_TOKEN {
                continue;
            }
            let connection = &mut connections[token as usize];
            take(connection, &mut counts, &mut out)?;
        }
    }

    let usage = cpu_seconds();
    println!(
        "sent {} acknowledged {} delivered {} receipts {} late {} cpu {:.3} s",
        counts.sent, counts.acknowledged, counts.delivered, counts.receipts, counts.late, usage
    );
    Ok(())
}

/// Opens a WebSocket to the reference server and logs `user` in (blocking).
fn log_in(address: &str, user: u32) -> Result<Connection, String> {
    let mut stream = TcpStream::connect(address).map_err(|e| format!("{address}: {e}"))?;
    stream.set_nodelay(true).map_err(|e| e.to_string())?;
    // A server that takes the connection and never answers ends the bench, not hangs it.
    stream
        .set_read_timeout(Some(LOG_IN_TIMEOUT))
        .map_err(|e| e.to_string())?;
    write!(
        stream,
        "GET /v1/ws HTTP/1.1\r\nHost: {address}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    )
    .map_err(|e| e.to_string())?;
    let mut inbox = Vec::with_capacity(4096);
    let header_end = loop {
        if let Some(end) = inbox.windows(4).position(|w| w == b"\r\n\r\n") {
            break end + 4;
        }
        fill(&mut stream, &mut inbox)?;
    };
    if !inbox.starts_with(b"HTTP/1.1 101") {
        return Err(format!("{address} did not upgrade user {user}"));
    }
    inbox.drain(..header_end);
    let mut out = Vec::new();
    write_frame(&mut stream, &mut out, hello(user, 0, 1).as_bytes())?;
    loop {
        if let Some((payload, used)) = frame(&inbox)? {
            let ok = decode(std::str::from_utf8(payload).map_err(|e| e.to_string())?)
                .map(|f| f.op == "hello_ok")
                .unwrap_or(false);
            if !ok {
                return Err(format!("user {user}: no hello_ok"));
            }
            inbox.drain(..used);
            return Ok(Connection {
                stream,
                inbox,
                next_id: 0,
            });
        }
        fill(&mut stream, &mut inbox)?;
    }
}

fn fill(stream: &mut TcpStream, inbox: &mut Vec<u8>) -> Result<(), String> {
    let mut chunk = [0u8; 4096];
    match stream.read(&mut chunk) {
        Ok(0) => Err("the server closed the connection".into()),
        Ok(n) => {
            inbox.extend_from_slice(&chunk[..n]);
            Ok(())
        }
        Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => Err(format!(
            "the server did not answer a log-in within {LOG_IN_TIMEOUT:?}"
        )),
        Err(e) => Err(e.to_string()),
    }
}

/// One `recv` for a connection epoll called ready, then every whole frame in its inbox.
fn take(connection: &mut Connection, counts: &mut Counts, out: &mut Vec<u8>) -> Result<(), String> {
    let mut chunk = [0u8; 4096];
    match connection.stream.read(&mut chunk) {
        Ok(0) => return Err("the server closed a connection".into()),
        Ok(n) => connection.inbox.extend_from_slice(&chunk[..n]),
        Err(e) if e.kind() == ErrorKind::WouldBlock => return Ok(()),
        Err(e) => return Err(e.to_string()),
    }
    let mut offset = 0;
    while let Some((payload, used)) = frame(&connection.inbox[offset..])? {
        let text = std::str::from_utf8(payload).map_err(|e| e.to_string())?;
        let f = decode(text).map_err(|e| e.to_string())?;
        match &*f.op {
            "sent" => counts.acknowledged += 1,
            "receipt" => counts.receipts += 1,
            "msg" => {
                counts.delivered += 1;
                let reply = ack(
                    f.seq.unwrap_or(0),
                    f.id.unwrap_or(0),
                    f.from.unwrap_or(0),
                    f.t.unwrap_or(0),
                    f.s.unwrap_or(0),
                    0,
                );
                write_frame(&mut connection.stream, out, reply.as_bytes())?;
            }
            other => return Err(format!("unexpected frame {other}")),
        }
        offset += used;
    }
    connection.inbox.drain(..offset);
    Ok(())
}

/// A whole unmasked text frame from the server at the start of `bytes`: its payload and the
/// bytes it takes.
fn frame(bytes: &[u8]) -> Result<Option<(&[u8], usize)>, String> {
    if bytes.len() < 2 {
        return Ok(None);
    }
    if bytes[0] != 0x81 {
        return Err(format!(
            "a frame of first byte {:#x}, not a whole text frame",
            bytes[0]
        ));
    }
    let (length, header) = match bytes[1] {
        126 if bytes.len() >= 4 => (u16::from_be_bytes([bytes[2], bytes[3]]) as usize, 4),
        126 => return Ok(None),
        n if n < 126 => (n as usize, 2),
        _ => return Err("a frame longer than 64 KiB".into()),
    };
    if bytes.len() < header + length {
        return Ok(None);
    }
    Ok(Some((&bytes[header..header + length], header + length)))
}

/// A masked text frame written with one `send`.
fn write_frame(stream: &mut TcpStream, out: &mut Vec<u8>, payload: &[u8]) -> Result<(), String> {
    const MASK: [u8; 4] = [0x5a, 0x1c, 0x93, 0x07];
    out.clear();
    out.push(0x81);
    if payload.len() < 126 {
        out.push(0x80 | payload.len() as u8);
    } else {
        out.push(0x80 | 126);
        out.extend_from_slice(&(payload.len() as u16).to_be_bytes());
    }
    out.extend_from_slice(&MASK);
    out.extend(payload.iter().enumerate().map(|(i, b)| b ^ MASK[i % 4]));
    match stream.write(out) {
        Ok(n) if n == out.len() => Ok(()),
        Ok(n) => Err(format!("a socket took {n} of {} bytes", out.len())),
        Err(e) => Err(e.to_string()),
    }
}

fn watch(epoll: i32, fd: i32, events: u32, token: u64) -> Result<(), String> {
    let mut event = libc::epoll_event { events, u64: token };
    check(
        unsafe { libc::epoll_ctl(epoll, libc::EPOLL_CTL_ADD, fd, &mut event) },
        "epoll_ctl",
    )
}

/// Sets the timer to fire once after `after` (at least a nanosecond: zero would disarm it).
fn arm(timer: i32, after: Duration) -> Result<(), String> {
    let after = after.max(Duration::from_nanos(1));
    let spec = libc::itimerspec {
        it_interval: libc::timespec {
            tv_sec: 0,
            tv_nsec: 0,
        },
        it_value: libc::timespec {
            tv_sec: after.as_secs() as libc::time_t,
            tv_nsec: after.subsec_nanos() as libc::c_long,
        },
    };
    check(
        unsafe { libc::timerfd_settime(timer, 0, &spec, std::ptr::null_mut()) },
        "timerfd_settime",
    )
}

fn check(result: i32, what: &str) -> Result<(), String> {
    if result < 0 {
        return Err(format!("{what}: {}", std::io::Error::last_os_error()));
    }
    Ok(())
}

fn cpu_seconds() -> f64 {
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut usage) };
    let seconds = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    seconds(usage.ru_utime) + seconds(usage.ru_stime)
}
