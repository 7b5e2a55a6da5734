//! A real Prosody XMPP server for the XMPP tests: started on a free loopback port with a
//! configuration and data folder of its own (in-band registration open, MUC without room
//! locking or history, stream management, every stanza's top tag logged), stopped by its
//! PID when the test ends. `.ci/run` installs the Debian package `prosody`. The README's
//! "Point chatload at an XMPP server" shows the same settings.

use std::io::Write;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct Prosody {
    child: Child,
    pub port: u16,
    /// Where it serves XMPP over WebSocket.
    pub http_port: u16,
    log: PathBuf,
    _dir: tempfile::TempDir,
}

/// The prosody binary, or `None` outside CI when it is not installed (the test then says
/// so and does nothing); in CI its absence is a failure.
pub fn binary() -> Option<PathBuf> {
    let found = ["/usr/bin/prosody", "/usr/local/bin/prosody"]
        .into_iter()
        .map(PathBuf::from)
        .find(|p| p.exists());
    super::required(found, "prosody", "apt-get install prosody")
}

/// The configuration CI runs (the README shows it); `{dir}` and `{port}` are filled in.
pub const CONFIG: &str = r#"-- Prosody for chatload on loopback: accounts by in-band registration, MUC rooms as groups.
pidfile = "{dir}/prosody.pid"
data_path = "{dir}/data"
log = { debug = "{dir}/prosody.log"; error = "{dir}/error.log" }
interfaces = { "127.0.0.1" }
c2s_ports = { {port} }
s2s_ports = { }
http_ports = { {http_port} }
http_interfaces = { "127.0.0.1" }
https_ports = { }
admin_socket = "{dir}/prosody.sock"
-- websocket: XMPP over WebSocket (RFC 7395) at http://127.0.0.1:5280/xmpp-websocket
modules_enabled = { "roster"; "saslauth"; "disco"; "register"; "offline"; "ping"; "smacks"; "websocket" }
-- mod_posix refuses to run as root (CI's containers are root); s2s is not needed.
modules_disabled = { "s2s"; "posix" }
allow_registration = true
min_seconds_between_registrations = 0
c2s_require_encryption = false
allow_unencrypted_plain_auth = true
authentication = "internal_hashed"
storage = "internal"
-- The default c2s limit (10 kb/s per connection) would make the server, not the test, the limit.
limits = { c2s = { rate = "100mb/s" } }
VirtualHost "localhost"
Component "conference.localhost" "muc"
  muc_room_locking = false
  muc_room_default_history_length = 0
"#;

impl Prosody {
    pub fn start() -> Option<Prosody> {
        let bin = binary()?;
        let dir = tempfile::tempdir().expect("temp dir");
        let port = super::free_port();
        let http_port = super::free_port();
        let config = dir.path().join("prosody.cfg.lua");
        let text = CONFIG
            .replace("{dir}", &dir.path().display().to_string())
            .replace("{port}", &port.to_string())
            .replace("{http_port}", &http_port.to_string());
        std::fs::create_dir_all(dir.path().join("data")).expect("data dir");
        std::fs::File::create(&config)
            .and_then(|mut f| f.write_all(text.as_bytes()))
            .expect("write config");
        let child = Command::new(bin)
            .arg("--config")
            .arg(&config)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("prosody starts");
        let deadline = Instant::now() + Duration::from_secs(15);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err()
            || std::net::TcpStream::connect(("127.0.0.1", http_port)).is_err()
        {
            assert!(
                Instant::now() < deadline,
                "prosody did not listen on {port}: {}",
                std::fs::read_to_string(dir.path().join("error.log")).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        Some(Prosody {
            child,
            port,
            http_port,
            log: dir.path().join("prosody.log"),
            _dir: dir,
        })
    }

    pub fn url(&self) -> String {
        format!("xmpp://127.0.0.1:{}", self.port)
    }

    pub fn websocket_url(&self) -> String {
        format!("ws://127.0.0.1:{}/xmpp-websocket", self.http_port)
    }

    /// Lines of the server's log that contain `needle`.
    pub fn log_lines(&self, needle: &str) -> u64 {
        std::fs::read_to_string(&self.log)
            .unwrap_or_default()
            .lines()
            .filter(|l| l.contains(needle))
            .count() as u64
    }

    /// The chat and groupchat messages the server received from its clients, by its own
    /// log: stanzas whose top tag carries one of chatload's message ids (`id='c…'`).
    /// Receipts, markers and chat states carry none.
    pub fn messages_received(&self) -> u64 {
        std::fs::read_to_string(&self.log)
            .unwrap_or_default()
            .lines()
            .filter(|l| l.contains("Received[c2s]: <message") && l.contains(" id='c"))
            .count() as u64
    }
}

impl Drop for Prosody {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
