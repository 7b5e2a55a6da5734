//! A real mosquitto broker for the MQTT tests: started on a free loopback port with a config
//! file of its own (no persistence, anonymous or with a password file, optionally TLS),
//! stopped by its PID when the test ends. `.ci/run` installs the Debian package.

use std::io::Write;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct Broker {
    child: Option<Child>,
    /// The CPU core it is pinned to (`taskset -c`), if any.
    core: Option<usize>,
    pub port: u16,
    config: PathBuf,
    _dir: tempfile::TempDir,
}

/// The mosquitto binary, or `None` outside CI when it is not installed (the test then says
/// so and does nothing); in CI its absence is a failure.
pub fn binary() -> Option<PathBuf> {
    for p in [
        "/usr/sbin/mosquitto",
        "/usr/bin/mosquitto",
        "/usr/local/sbin/mosquitto",
    ] {
        if Path::new(p).exists() {
            return Some(PathBuf::from(p));
        }
    }
    if std::env::var_os("CI").is_some() {
        panic!("mosquitto is not installed; .ci/run installs the Debian package `mosquitto`");
    }
    eprintln!("skipping: mosquitto is not installed (apt-get install mosquitto)");
    None
}

/// A port no other broker of this process has had, below the kernel's ephemeral range
/// (32768 and up), so that neither another test's broker nor a client's outgoing connection
/// takes a killed broker's port before it restarts there.
fn free_port() -> u16 {
    use std::sync::atomic::{AtomicU16, Ordering::Relaxed};
    static NEXT: AtomicU16 = AtomicU16::new(0);
    let base = 20_000 + (std::process::id() % 1_000) as u16 * 10;
    (0..2_000)
        .map(|_| base + NEXT.fetch_add(1, Relaxed) % 2_000)
        .find(|&port| TcpListener::bind(("127.0.0.1", port)).is_ok())
        .expect("a free port between 20,000 and 32,000")
}

/// The configuration CI runs (the README shows it); `{port}` is filled in, and
/// `allow_anonymous true` follows unless a password file is given.
pub const CONFIG: &str = "listener {port} 127.0.0.1
set_tcp_nodelay true
persistence false
max_queued_messages 100000
max_inflight_messages 0
log_type error
";

/// Extra lines for the listener (TLS files, password file).
pub struct Options {
    pub extra: String,
}

impl Broker {
    pub fn start(opts: Options) -> Option<Broker> {
        Self::start_on(opts, None)
    }

    /// Started under `taskset -c CORE`, so that a test can measure a broker limited to one
    /// core while the load generator runs on another.
    pub fn start_pinned(opts: Options, core: usize) -> Option<Broker> {
        Self::start_on(opts, Some(core))
    }

    fn start_on(opts: Options, core: Option<usize>) -> Option<Broker> {
        let bin = binary()?;
        let dir = tempfile::tempdir().expect("temp dir");
        let port = free_port();
        let config = dir.path().join("mosquitto.conf");
        let mut f = std::fs::File::create(&config).expect("config");
        writeln!(
            f,
            "{}{}",
            CONFIG.replace("{port}", &port.to_string()),
            opts.extra
        )
        .expect("write config");
        if !opts.extra.contains("password_file") {
            writeln!(f, "allow_anonymous true").expect("write config");
        }
        drop(f);
        let mut b = Broker {
            child: None,
            core,
            port,
            config,
            _dir: dir,
        };
        b.launch(&bin);
        Some(b)
    }

    pub fn dir(&self) -> &Path {
        self._dir.path()
    }

    fn launch(&mut self, bin: &Path) {
        let mut cmd = match self.core {
            Some(core) => {
                let mut c = Command::new("taskset");
                c.arg("-c").arg(core.to_string()).arg(bin);
                c
            }
            None => Command::new(bin),
        };
        let child = cmd
            .arg("-c")
            .arg(&self.config)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(self.log_file())
            .spawn()
            .expect("mosquitto starts");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            // Something else answering on the port while ours has exited (it could not
            // bind) would have the test measure another broker.
            if let Some(exited) = self.exited() {
                panic!("mosquitto on port {} {exited}", self.port);
            }
            if std::net::TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "mosquitto did not listen on {}",
                self.port
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Where mosquitto writes its errors (`log_type error`): appended across restarts.
    fn log_file(&self) -> Stdio {
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self._dir.path().join("mosquitto.log"))
            .map_or_else(|_| Stdio::null(), Stdio::from)
    }

    /// How the broker ended, with its log, when it ended by itself.
    fn exited(&mut self) -> Option<String> {
        let status = self.child.as_mut()?.try_wait().ok()??;
        let log =
            std::fs::read_to_string(self._dir.path().join("mosquitto.log")).unwrap_or_default();
        Some(format!(
            "exited by itself ({status}); its log: {:?}",
            log.trim()
        ))
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().map_or(0, |c| c.id())
    }

    /// Kills the broker by its PID (SIGKILL: no goodbye to the clients).
    pub fn kill(&mut self) {
        // A test that failed because its broker went away says so on its way out.
        if let Some(exited) = self.exited() {
            eprintln!("mosquitto on port {} had {exited}", self.port);
        }
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Starts it again on the same port (an empty broker: no persistence).
    pub fn restart(&mut self) {
        self.kill();
        let bin = binary().expect("mosquitto");
        self.launch(&bin);
    }

    pub fn url(&self) -> String {
        format!("mqtt://127.0.0.1:{}", self.port)
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        self.kill();
    }
}
