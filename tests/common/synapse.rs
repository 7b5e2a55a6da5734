//! A real Synapse homeserver for the Matrix tests: started on a free loopback port with its
//! own configuration, SQLite database and signing key in a temp folder, one application
//! service registered (chatload's webhook as its URL, the users `@u<n>` its namespace),
//! stopped by its PID when the test ends. `.ci/run` installs the PyPI package
//! `matrix-synapse`. The README's "Point chatload at Matrix" shows the same settings.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct Synapse {
    child: Child,
    pub port: u16,
    /// Where the homeserver pushes the application service's transactions.
    pub webhook_port: u16,
    pub dir: tempfile::TempDir,
}

/// The application service's tokens (the test's own, on loopback).
pub const AS_TOKEN: &str = "chatload-as-7d1e0c";
pub const HS_TOKEN: &str = "chatload-hs-4b9a2f";

/// A Python that can run Synapse, or `None` outside CI when none can (the test then says
/// so and does nothing); in CI its absence is a failure.
pub fn python() -> Option<PathBuf> {
    let found = ["python3", "/usr/bin/python3"]
        .into_iter()
        .map(PathBuf::from)
        .find(|p| {
            Command::new(p)
                .args(["-c", "import synapse.app.homeserver"])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .is_ok_and(|s| s.success())
        });
    super::required(found, "Synapse", "python3 -m pip install matrix-synapse")
}

/// The homeserver's configuration (the README shows it); `{dir}` and `{port}` are filled in.
pub const CONFIG: &str = r#"# Synapse for chatload on loopback: one application service, SQLite, no federation.
server_name: localhost
listeners:
  - port: {port}
    bind_addresses: ['127.0.0.1']
    type: http
    tls: false
    x_forwarded: false
    resources:
      - names: [client]
        compress: false
database:
  name: sqlite3
  args:
    database: {dir}/homeserver.db
media_store_path: {dir}/media
signing_key_path: {dir}/signing.key
report_stats: false
trusted_key_servers: []
suppress_key_server_warning: true
enable_metrics: false
app_service_config_files: [{dir}/chatload-appservice.yaml]
"#;

/// The application service's registration: chatload's webhook is its URL; `rate_limited:
/// false` keeps the homeserver's per-user limits out of the measurement; the alias
/// namespace lets `chatload setup matrix` name its rooms and find them again.
pub const REGISTRATION: &str = r#"id: chatload
url: http://127.0.0.1:{webhook_port}
as_token: {as_token}
hs_token: {hs_token}
sender_localpart: chatload
rate_limited: false
namespaces:
  users:
    - exclusive: true
      regex: '@u[0-9]+:localhost'
  aliases:
    - exclusive: true
      regex: '#chatload\..*:localhost'
  rooms: []
"#;

/// A registration from before `chatload setup matrix` named its rooms: no aliases.
pub fn registration_without_aliases() -> String {
    let namespace = "  aliases:\n    - exclusive: true\n      regex: '#chatload\\..*:localhost'\n";
    assert!(REGISTRATION.contains(namespace));
    REGISTRATION.replace(namespace, "  aliases: []\n")
}

impl Synapse {
    pub fn start() -> Option<Synapse> {
        Self::start_with(REGISTRATION)
    }

    /// A homeserver with the application service registered by `registration`.
    pub fn start_with(registration: &str) -> Option<Synapse> {
        let python = python()?;
        let dir = tempfile::tempdir().expect("temp dir");
        let port = super::free_port();
        let webhook_port = super::free_port();
        let d = dir.path().display().to_string();
        std::fs::write(
            dir.path().join("homeserver.yaml"),
            CONFIG
                .replace("{dir}", &d)
                .replace("{port}", &port.to_string()),
        )
        .expect("write config");
        std::fs::write(
            dir.path().join("chatload-appservice.yaml"),
            registration
                .replace("{webhook_port}", &webhook_port.to_string())
                .replace("{as_token}", AS_TOKEN)
                .replace("{hs_token}", HS_TOKEN),
        )
        .expect("write registration");
        let homeserver = |extra: &[&str]| {
            let mut c = Command::new(&python);
            c.args(["-m", "synapse.app.homeserver", "-c"])
                .arg(dir.path().join("homeserver.yaml"))
                .args(extra)
                .current_dir(dir.path())
                .stdin(Stdio::null());
            c
        };
        let keys = homeserver(&["--generate-keys"])
            .output()
            .expect("synapse runs");
        assert!(
            keys.status.success(),
            "synapse --generate-keys: {}",
            String::from_utf8_lossy(&keys.stderr)
        );
        let log = std::fs::File::create(dir.path().join("homeserver.out")).expect("log file");
        let child = homeserver(&[])
            .stdout(log.try_clone().expect("log file"))
            .stderr(log)
            .spawn()
            .expect("synapse starts");
        let server = Synapse {
            child,
            port,
            webhook_port,
            dir,
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "synapse did not listen on {port}: {}",
                std::fs::read_to_string(server.dir.path().join("homeserver.out"))
                    .unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        Some(server)
    }

    /// Waits up to `within` for a line of the homeserver's log holding `needle`.
    pub fn wait_for_log(&self, needle: &str, within: Duration) -> bool {
        let deadline = Instant::now() + within;
        loop {
            let log =
                std::fs::read_to_string(self.dir.path().join("homeserver.out")).unwrap_or_default();
            if log.contains(needle) {
                return true;
            }
            if Instant::now() >= deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The room messages in the homeserver's own database.
    pub fn messages_stored(&self) -> u64 {
        self.count("select count(*) from events where type='m.room.message'")
    }

    /// The rooms in the homeserver's own database.
    pub fn rooms_stored(&self) -> u64 {
        self.count("select count(*) from rooms")
    }

    pub fn count(&self, query: &str) -> u64 {
        let db = self.dir.path().join("homeserver.db");
        let out = Command::new(python().expect("python"))
            .args([
                "-c",
                "import sqlite3,sys; c=sqlite3.connect(sys.argv[1]); print(c.execute(sys.argv[2]).fetchone()[0])",
            ])
            .arg(&db)
            .arg(query)
            .output()
            .expect("python runs");
        let text = String::from_utf8_lossy(&out.stdout);
        text.trim().parse().unwrap_or_else(|_| {
            panic!(
                "not a count: {text} {}",
                String::from_utf8_lossy(&out.stderr)
            )
        })
    }
}

impl Drop for Synapse {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        // A failed test shows what the homeserver did about the application service (its
        // pushes, the service marked down, the retries), which its own log alone tells.
        if std::thread::panicking() {
            let log =
                std::fs::read_to_string(self.dir.path().join("homeserver.out")).unwrap_or_default();
            let lines: Vec<&str> = log
                .lines()
                .filter(|l| {
                    let l = l.to_ascii_lowercase();
                    l.contains("appservice") || l.contains("recover") || l.contains("as id")
                })
                .collect();
            eprintln!(
                "the homeserver's application-service log ({} lines, last 60):",
                lines.len()
            );
            for line in &lines[lines.len().saturating_sub(60)..] {
                eprintln!("  {line}");
            }
        }
    }
}
