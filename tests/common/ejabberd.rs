//! A real ejabberd XMPP server for the ejabberd tests: its own Erlang node on free loopback
//! ports, with configuration, database and log in a folder of its own (in-band
//! registration open, MUC rooms archived, stream management, the message archive (MAM) on
//! for every account, so the server's own database counts what it took), stopped with its
//! process group when the test ends. `.ci/run` installs the Debian package `ejabberd`; its
//! `ejabberdctl` runs the server as the `ejabberd` user, so the folder is handed to that
//! user. The README's "Point chatload at an XMPP server" shows the same settings.

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct Ejabberd {
    child: Child,
    pub port: u16,
    /// Where it serves XMPP over WebSocket.
    pub http_port: u16,
    dir: tempfile::TempDir,
}

/// `ejabberdctl`, or `None` outside CI when ejabberd is not installed (the test then says
/// so and does nothing); in CI its absence is a failure.
pub fn binary() -> Option<PathBuf> {
    let found = ["/usr/sbin/ejabberdctl", "/usr/local/sbin/ejabberdctl"]
        .into_iter()
        .map(PathBuf::from)
        .find(|p| p.exists());
    super::required(found, "ejabberd", "apt-get install ejabberd")
}

/// The configuration CI runs (the README shows it); `{port}` and `{http_port}` are filled
/// in.
pub const CONFIG: &str = r#"# ejabberd for chatload on loopback: accounts by in-band registration, MUC rooms as groups.
hosts: [localhost]
loglevel: info
certfiles: []
# Accounts are made as fast as chatload asks (the default allows one per IP per 10 min).
registration_timeout: infinity
listen:
  - port: {port}
    ip: 127.0.0.1
    module: ejabberd_c2s
    starttls: false
    shaper: none
    max_stanza_size: 262144
    # The default backlog of 5 drops connections when hundreds log in at once.
    backlog: 1024
  - port: {http_port}
    ip: 127.0.0.1
    module: ejabberd_http
    backlog: 1024
    request_handlers:
      /xmpp-websocket: ejabberd_http_ws
auth_method: internal
auth_password_format: scram
access_rules:
  c2s:
    allow: all
  register:
    allow: all
shaper_rules:
  c2s_shaper: none
  max_user_sessions: 10
  max_user_offline_messages: 5000
modules:
  mod_disco: {}
  mod_mam:
    # Every message archived: the server's own count of what it took.
    default: always
  mod_muc:
    access: all
    access_create: all
    access_persistent: all
    history_size: 0
    default_room_options:
      # Only persistent rooms keep an archive.
      persistent: true
      mam: true
  mod_offline:
    access_max_user_messages: max_user_offline_messages
  mod_ping: {}
  mod_register:
    ip_access: all
    access: register
  mod_roster: {}
  mod_stream_mgmt:
    resend_on_timeout: if_offline
"#;

/// The `ejabberd` user's uid and gid, from /etc/passwd.
fn ejabberd_user() -> Option<(u32, u32)> {
    let passwd = std::fs::read_to_string("/etc/passwd").ok()?;
    let line = passwd.lines().find(|l| l.starts_with("ejabberd:"))?;
    let mut fields = line.split(':').skip(2);
    Some((fields.next()?.parse().ok()?, fields.next()?.parse().ok()?))
}

impl Ejabberd {
    pub fn start() -> Option<Ejabberd> {
        let bin = binary()?;
        let dir = tempfile::tempdir().expect("temp dir");
        let port = super::free_port();
        let http_port = super::free_port();
        let dist_port = super::free_port();
        let config = CONFIG
            .replace("{port}", &port.to_string())
            .replace("{http_port}", &http_port.to_string());
        std::fs::write(dir.path().join("ejabberd.yml"), config).expect("write config");
        // One Erlang node per test: its own name and distribution port, and no epmd.
        std::fs::write(
            dir.path().join("ejabberdctl.cfg"),
            format!(
                "ERLANG_NODE=chatload{port}@localhost\nERL_DIST_PORT={dist_port}\nEJABBERD_PID_PATH={}\n",
                dir.path().join("ejabberd.pid").display()
            ),
        )
        .expect("write ctl config");
        std::fs::create_dir_all(dir.path().join("spool")).expect("spool dir");
        let (uid, gid) = ejabberd_user().expect("ejabberd's package made the user `ejabberd`");
        for entry in [
            dir.path().to_path_buf(),
            dir.path().join("spool"),
            dir.path().join("ejabberd.yml"),
            dir.path().join("ejabberdctl.cfg"),
        ] {
            std::os::unix::fs::chown(&entry, Some(uid), Some(gid))
                .expect("the tests run as root, as ejabberdctl requires");
        }
        let child = ctl(&bin, dir.path())
            .arg("foreground")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .process_group(0)
            .spawn()
            .expect("ejabberd starts");
        let server = Ejabberd {
            child,
            port,
            http_port,
            dir,
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err()
            || std::net::TcpStream::connect(("127.0.0.1", http_port)).is_err()
        {
            assert!(
                Instant::now() < deadline,
                "ejabberd did not listen on {port}: {}",
                std::fs::read_to_string(server.dir.path().join("ejabberd.log")).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        Some(server)
    }

    pub fn url(&self) -> String {
        format!("xmpp://127.0.0.1:{}", self.port)
    }

    pub fn websocket_url(&self) -> String {
        format!("ws://127.0.0.1:{}/xmpp-websocket", self.http_port)
    }

    /// Runs one `ejabberdctl` command against this server and returns what it printed.
    pub fn ctl(&self, args: &[&str]) -> String {
        let bin = binary().expect("ejabberdctl");
        let out = ctl(&bin, self.dir.path())
            .args(args)
            .stdin(Stdio::null())
            .output()
            .expect("ejabberdctl runs");
        assert!(
            out.status.success(),
            "ejabberdctl {args:?}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Messages in the server's archive (MAM): a one-to-one message is archived for its
    /// sender and its recipient, a room message once for the room.
    pub fn archived(&self) -> u64 {
        let info = self.ctl(&["mnesia_table_info", "archive_msg"]);
        info.split("{size,")
            .nth(1)
            .and_then(|rest| rest.split('}').next())
            .and_then(|n| n.trim().parse().ok())
            .unwrap_or_else(|| panic!("no table size in: {info}"))
    }

    /// Sessions the server still holds (one waiting for a resumption counts).
    pub fn sessions(&self) -> u64 {
        let n = self.ctl(&["connected_users_number"]);
        n.trim()
            .parse()
            .unwrap_or_else(|_| panic!("not a count: {n}"))
    }

    /// Lines of the server's log that contain `needle`.
    pub fn log_lines(&self, needle: &str) -> u64 {
        std::fs::read_to_string(self.dir.path().join("ejabberd.log"))
            .unwrap_or_default()
            .lines()
            .filter(|l| l.contains(needle))
            .count() as u64
    }
}

fn ctl(bin: &Path, dir: &Path) -> Command {
    let mut c = Command::new(bin);
    c.arg("--config")
        .arg(dir.join("ejabberd.yml"))
        .arg("--ctl-config")
        .arg(dir.join("ejabberdctl.cfg"))
        .arg("--spool")
        .arg(dir.join("spool"))
        .arg("--logs")
        .arg(dir)
        .current_dir(dir);
    c
}

impl Drop for Ejabberd {
    /// `su` starts the Erlang VM in a session of its own, out of reach of the process
    /// group this helper made, so the VM is stopped by the PID it wrote, then the rest.
    fn drop(&mut self) {
        if std::thread::panicking() {
            // What the server said about the failed test, before its folder goes.
            for log in ["error.log", "ejabberd.log"] {
                let text = std::fs::read_to_string(self.dir.path().join(log)).unwrap_or_default();
                let lines: Vec<&str> = text.lines().collect();
                let tail = lines[lines.len().saturating_sub(60)..].join("\n");
                eprintln!("ejabberd's {log}, its last 60 lines:\n{tail}");
            }
        }
        let vm = std::fs::read_to_string(self.dir.path().join("ejabberd.pid"))
            .ok()
            .and_then(|p| p.trim().parse::<i32>().ok());
        // SAFETY: kill(2) on processes this test started; no memory is touched.
        unsafe {
            if let Some(pid) = vm {
                libc::kill(pid, libc::SIGKILL);
            }
            libc::kill(-(self.child.id() as i32), libc::SIGKILL);
        }
        let _ = self.child.wait();
    }
}
