//! A real RabbitMQ broker with its MQTT plugin for the MQTT tests: its own node name, ports,
//! configuration, database and logs in a temporary folder, started in its own process group
//! and stopped by that group when the test ends; the Erlang port mapper (epmd) it starts is
//! stopped too when none ran before. `.ci/run` installs the Debian package
//! `rabbitmq-server`. Starting takes about 13 s, so a test binary starts one.

use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const SERVER: &str = "/usr/lib/rabbitmq/bin/rabbitmq-server";

pub struct RabbitMq {
    child: Child,
    pub mqtt_port: u16,
    node: String,
    /// epmd's PID when this broker started it.
    epmd: Option<u32>,
    _dir: tempfile::TempDir,
}

/// Whether RabbitMQ is installed; in CI its absence is a failure, elsewhere the test says it
/// was skipped.
pub fn installed() -> bool {
    let found = Path::new(SERVER).exists().then_some(());
    super::required(found, "rabbitmq-server", "apt-get install rabbitmq-server").is_some()
}

fn epmd_pid() -> Option<u32> {
    let out = Command::new("pgrep").args(["-x", "epmd"]).output().ok()?;
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .next()
        .and_then(|p| p.parse().ok())
}

/// The configuration CI runs (`rabbitmq.conf` and `enabled_plugins`; the README shows
/// them); `{amqp}` and `{mqtt_port}` are filled in.
pub const CONFIG: &str = "listeners.tcp.default = 127.0.0.1:{amqp}
mqtt.listeners.tcp.default = 127.0.0.1:{mqtt_port}
mqtt.allow_anonymous = true
loopback_users = none
";
pub const PLUGINS: &str = "[rabbitmq_mqtt].\n";

impl RabbitMq {
    pub fn start() -> Option<RabbitMq> {
        if !installed() {
            return None;
        }
        let epmd_before = epmd_pid();
        let dir = tempfile::tempdir().expect("temp dir");
        let (amqp, mqtt_port, dist) = (super::free_port(), super::free_port(), super::free_port());
        let d = dir.path();
        std::fs::write(
            d.join("rabbitmq.conf"),
            CONFIG
                .replace("{amqp}", &amqp.to_string())
                .replace("{mqtt_port}", &mqtt_port.to_string()),
        )
        .expect("write config");
        std::fs::write(d.join("enabled_plugins"), PLUGINS).expect("write plugins");
        let node = format!("chatload{}@localhost", std::process::id());
        let child = Command::new(SERVER)
            .env("RABBITMQ_CONFIG_FILE", d.join("rabbitmq"))
            .env("RABBITMQ_ENABLED_PLUGINS_FILE", d.join("enabled_plugins"))
            .env("RABBITMQ_MNESIA_BASE", d.join("mnesia"))
            .env("RABBITMQ_LOG_BASE", d.join("log"))
            .env("RABBITMQ_PID_FILE", d.join("pid"))
            .env("RABBITMQ_NODENAME", &node)
            .env("RABBITMQ_DIST_PORT", dist.to_string())
            .env("HOME", d)
            .process_group(0)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("rabbitmq-server starts");
        let deadline = Instant::now() + Duration::from_secs(60);
        while std::net::TcpStream::connect(("127.0.0.1", mqtt_port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "RabbitMQ did not listen for MQTT on {mqtt_port} within 60 s"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        let epmd = if epmd_before.is_none() {
            epmd_pid()
        } else {
            None
        };
        Some(RabbitMq {
            child,
            mqtt_port,
            epmd,
            node,
            _dir: dir,
        })
    }

    pub fn url(&self) -> String {
        format!("mqtt://127.0.0.1:{}", self.mqtt_port)
    }

    /// Evaluates an Erlang expression on the node (`rabbitmqctl eval`) and returns what it
    /// printed.
    pub fn eval(&self, expression: &str) -> String {
        let out = Command::new("/usr/lib/rabbitmq/bin/rabbitmqctl")
            .args(["-n", &self.node, "eval", expression])
            .env("HOME", self._dir.path())
            .stdin(Stdio::null())
            .output()
            .expect("rabbitmqctl runs");
        assert!(
            out.status.success(),
            "rabbitmqctl eval: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// The QoS 1 messages the broker took from its clients, by its own counters: the MQTT
    /// plugin publishes through an AMQP 0-9-1 channel with confirms on, so each one is
    /// `messages_received_confirm_total` there (QoS 0 publishes count only as received).
    pub fn messages_received_confirmed(&self) -> u64 {
        let overview = self.eval("rabbit_global_counters:overview().");
        let key = "messages_received_confirm_total => ";
        let at = overview
            .find(key)
            .unwrap_or_else(|| panic!("no {key} in: {overview}"))
            + key.len();
        overview[at..]
            .chars()
            .take_while(char::is_ascii_digit)
            .collect::<String>()
            .parse()
            .unwrap_or_else(|_| panic!("no count after {key}: {overview}"))
    }
}

impl Drop for RabbitMq {
    fn drop(&mut self) {
        // The start script and the Erlang VM it runs share the group started above.
        let group = self.child.id() as i32;
        // SAFETY: kill(2) on our own process group; no memory is involved.
        unsafe {
            libc::kill(-group, libc::SIGKILL);
        }
        let _ = self.child.wait();
        if let Some(pid) = self.epmd {
            // SAFETY: as above, on the epmd this broker started.
            unsafe {
                libc::kill(pid as i32, libc::SIGTERM);
            }
        }
    }
}
