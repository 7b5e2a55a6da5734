//! `chatload serve` as a separate process, as a user runs it: on a free loopback port, with
//! fault flags, stopped with Ctrl-C (SIGINT to its PID), after which it prints what it did.

use std::io::{BufRead, BufReader, Read};
use std::process::{Child, ChildStderr, Command, Stdio};

pub struct ServeProcess {
    child: Option<Child>,
    stderr: Option<BufReader<ChildStderr>>,
    pub port: u16,
}

impl ServeProcess {
    /// Starts `chatload serve --listen 127.0.0.1:0 FLAGS…` and waits for its address.
    pub fn start(flags: &[&str]) -> ServeProcess {
        Self::launch(Command::new(env!("CARGO_BIN_EXE_chatload")), flags)
    }

    /// The same under `taskset -c CORE`, so that the server has a core of its own.
    pub fn start_pinned(flags: &[&str], core: usize) -> ServeProcess {
        let mut c = Command::new("taskset");
        c.arg("-c")
            .arg(core.to_string())
            .arg(env!("CARGO_BIN_EXE_chatload"));
        Self::launch(c, flags)
    }

    fn launch(mut command: Command, flags: &[&str]) -> ServeProcess {
        let mut child = command
            .args(["serve", "--listen", "127.0.0.1:0"])
            .args(flags)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start chatload serve");
        let mut stderr = BufReader::new(child.stderr.take().expect("stderr"));
        let mut line = String::new();
        stderr
            .read_line(&mut line)
            .expect("serve says where it listens");
        // "chatload serve: listening on ws://127.0.0.1:PORT/v1/ws and …"
        let port = line
            .split("ws://127.0.0.1:")
            .nth(1)
            .and_then(|rest| rest.split('/').next())
            .and_then(|p| p.parse().ok())
            .unwrap_or_else(|| panic!("no port in {line:?}"));
        ServeProcess {
            child: Some(child),
            stderr: Some(stderr),
            port,
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().map_or(0, |c| c.id())
    }

    pub fn ws_url(&self) -> String {
        format!("ws://127.0.0.1:{}/v1/ws", self.port)
    }

    /// Stops it with Ctrl-C and returns what it printed on the way out.
    pub fn stop(mut self) -> String {
        self.interrupt_and_read()
    }

    fn interrupt_and_read(&mut self) -> String {
        let mut rest = String::new();
        if let Some(mut child) = self.child.take() {
            // SAFETY: signalling a child this test started, by its PID.
            unsafe {
                libc::kill(child.id() as i32, libc::SIGINT);
            }
            if let Some(mut e) = self.stderr.take() {
                let _ = e.read_to_string(&mut rest);
            }
            let _ = child.wait();
        }
        rest
    }
}

impl Drop for ServeProcess {
    fn drop(&mut self) {
        self.interrupt_and_read();
    }
}
