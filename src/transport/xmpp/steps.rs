//! How far one XMPP log-in or account registration got. The caller's timeout drops the
//! log-in in the middle of a step, and its error must still say what went unanswered: no
//! TCP connection at all (the target may not be reachable), or an open stream on which the
//! server left one request of the log-in unanswered (a server that is overloaded or wedged,
//! and one request to look for in its log). Owns the steps and their sentences; the log-in
//! itself is `login`'s.

use crate::metrics::ErrorKind;
use crate::transport::ConnectError;
use crate::transport::ws_open::Progress;
use std::sync::atomic::AtomicU8;
use std::sync::atomic::AtomicU32;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

/// One request of the log-in, in the order they are made.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Step {
    Connection,
    StreamHeader,
    Features,
    StartTls,
    TlsHandshake,
    Sasl,
    Resumption,
    Binding,
    Session,
    StreamManagement,
    Rooms,
    Registration,
}

const IN_ORDER: [Step; 12] = [
    Step::Connection,
    Step::StreamHeader,
    Step::Features,
    Step::StartTls,
    Step::TlsHandshake,
    Step::Sasl,
    Step::Resumption,
    Step::Binding,
    Step::Session,
    Step::StreamManagement,
    Step::Rooms,
    Step::Registration,
];

/// The step a log-in is in; shared by reference with the log-in, read after its timeout.
#[derive(Debug, Default)]
pub struct Steps {
    step: AtomicU8,
    rooms_waiting: AtomicU32,
    rooms: AtomicU32,
    /// The connection's own progress: TCP, then for XMPP over WebSocket TLS and the upgrade.
    pub opening: Progress,
}

impl Steps {
    pub fn reached(&self, step: Step) {
        self.step.store(step as u8, Relaxed);
    }

    /// Room joins not yet confirmed, of all the user's rooms.
    pub fn rooms_waiting(&self, waiting: usize, of: usize) {
        self.rooms_waiting.store(waiting as u32, Relaxed);
        self.rooms.store(of as u32, Relaxed);
        self.reached(Step::Rooms);
    }

    fn step(&self) -> Step {
        let at = usize::from(self.step.load(Relaxed));
        IN_ORDER.get(at).copied().unwrap_or(Step::Connection)
    }

    /// The error for a log-in (or registration) cut short by a timeout of `timeout`.
    pub fn timed_out(&self, timeout: Duration) -> ConnectError {
        let (done, unanswered) = match self.step() {
            // Nothing of XMPP was said yet: whether anything answered is the opening's.
            Step::Connection => return self.opening.timed_out(timeout),
            Step::StreamHeader => ("the connection was open", "the stream header got no answer"),
            Step::Features => (
                "the server answered the stream header",
                "sent no stream features",
            ),
            Step::StartTls => ("the stream was open", "STARTTLS got no answer"),
            Step::TlsHandshake => (
                "the server agreed to STARTTLS",
                "the TLS handshake did not finish",
            ),
            Step::Sasl => (
                "the stream was open",
                "the SASL authentication got no answer",
            ),
            Step::Resumption => (
                "the log-in was accepted",
                "the request to resume the earlier stream got no answer",
            ),
            Step::Binding => (
                "the log-in was accepted",
                "the resource binding got no answer",
            ),
            Step::Session => (
                "the log-in was accepted",
                "the session request got no answer",
            ),
            Step::StreamManagement => (
                "the log-in was accepted",
                "enabling stream management got no answer",
            ),
            Step::Rooms => {
                return ConnectError::new(
                    ErrorKind::HelloTimeout,
                    format!(
                        "the log-in was accepted, but {} of the user's {} rooms had not confirmed the join within {timeout:?}",
                        self.rooms_waiting.load(Relaxed),
                        self.rooms.load(Relaxed)
                    ),
                );
            }
            Step::Registration => (
                "the stream was open",
                "the account registration request got no answer",
            ),
        };
        ConnectError::new(
            ErrorKind::HelloTimeout,
            format!("{done}, but {unanswered} within {timeout:?}"),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMIT: Duration = Duration::from_secs(5);

    #[test]
    fn a_timeout_names_the_step_that_went_unanswered() {
        let steps = Steps::default();
        let e = steps.timed_out(LIMIT);
        assert_eq!(e.kind, ErrorKind::ConnectTimeout, "no TCP connection yet");
        assert_eq!(
            e.detail,
            "no TCP connection within 5s: the connection request was not answered"
        );
        steps.reached(Step::Binding);
        let e = steps.timed_out(LIMIT);
        assert_eq!(e.kind, ErrorKind::HelloTimeout);
        assert_eq!(
            e.detail,
            "the log-in was accepted, but the resource binding got no answer within 5s"
        );
        steps.rooms_waiting(2, 3);
        assert_eq!(
            steps.timed_out(LIMIT).detail,
            "the log-in was accepted, but 2 of the user's 3 rooms had not confirmed the join within 5s"
        );
        steps.reached(Step::Registration);
        assert_eq!(
            steps.timed_out(LIMIT).detail,
            "the stream was open, but the account registration request got no answer within 5s"
        );
    }

    #[test]
    fn every_step_is_read_back_as_itself() {
        let steps = Steps::default();
        for step in IN_ORDER {
            steps.reached(step);
            assert_eq!(steps.step(), step);
        }
    }
}
