//! A client TCP connection that knows when what it reads reached this machine: the kernel
//! stamps every arriving segment (`SO_TIMESTAMPNS`), and each read takes the stamp of the
//! newest bytes it returned. Owns reading and writing the socket and that stamp; not what the
//! bytes mean, nor what a latency is made of (the virtual user's).
//!
//! Why: a frame that waited in the socket while the client's one thread served other
//! connections is not the target's delay. Measured at the moment chatload reads it, a busy
//! client would add its own queueing to every latency it reports (at 50,000 msg/s on one core
//! most of the delivery p50); measured at arrival, it reports what the target did, and the
//! client's own wait is shown apart (`read_lag`), as a late send is.
//!
//! One read returns the stamp of the newest bytes it took (the kernel keeps one per call), so
//! frames read together are all taken to have arrived with the last of them: a latency is
//! never shortened by this, and the client's wait never overstated.
//!
//! The stamp is on the wall clock (the only clock the kernel stamps with); what is kept from
//! it is only how long ago the bytes arrived, read against the same clock, so a step of the
//! wall clock between arrival and reading is the one thing that can mislead it. The wall
//! clock keeps a fixed distance from the monotonic one but for steps (NTP slews both alike),
//! so once that distance has moved since the process first looked (a step, a leap second)
//! no stamp is used any more: latencies then end at the read, as without stamps — never
//! shortened by a clock that jumped ahead.

use std::io;
use std::net::Shutdown;
use std::os::fd::AsRawFd;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll, ready};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tokio::io::unix::AsyncFd;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// A stamp older than this when read is taken for a wall-clock step, not a wait.
const MAX_PLAUSIBLE_WAIT: Duration = Duration::from_secs(60);
/// How far the wall clock may drift from the monotonic one before it counts as stepped.
const STEP: Duration = Duration::from_millis(1);

/// Both clocks as the process first read them, to tell a wall-clock step from a wait.
static CLOCKS_AT_START: OnceLock<(Instant, SystemTime)> = OnceLock::new();

/// The wall clock's time now, `None` once it has been stepped since the process began.
fn unstepped_wall_clock() -> Option<SystemTime> {
    let &(mono_start, wall_start) = CLOCKS_AT_START.get_or_init(|| {
        // Read the two back to back; a pair the thread was preempted between is read again.
        let mut pair = (Instant::now(), SystemTime::now());
        for _ in 0..8 {
            if pair.0.elapsed() < STEP / 10 {
                break;
            }
            pair = (Instant::now(), SystemTime::now());
        }
        pair
    });
    let wall = SystemTime::now();
    let on_wall = wall.duration_since(wall_start).ok();
    same_distance(on_wall, mono_start.elapsed()).then_some(wall)
}

/// Whether the wall clock went as far as the monotonic one since the start (`None`: it went
/// back before the start).
fn same_distance(on_wall: Option<Duration>, on_mono: Duration) -> bool {
    on_wall.is_some_and(|w| w.abs_diff(on_mono) <= STEP)
}

pub struct StampedTcp {
    io: AsyncFd<std::net::TcpStream>,
    /// Wall-clock arrival of the newest bytes the last read returned, in nanoseconds since
    /// the epoch; 0 while no read carried a stamp.
    arrived_ns: u64,
    /// The same, for a reader that holds the stream only through a split half.
    shared: Option<Arc<AtomicU64>>,
}

impl StampedTcp {
    /// Takes over `tcp` from tokio's own registration. Without stamps (a kernel that refuses
    /// the option) it still reads and writes; [`StampedTcp::waited`] is then `None`. So it is
    /// for the first segments after the machine's first stamping socket asked: Linux turns
    /// stamping on a moment later, from a work queue.
    pub fn new(tcp: tokio::net::TcpStream) -> io::Result<StampedTcp> {
        let tcp = tcp.into_std()?;
        let on: libc::c_int = 1;
        // SAFETY: a valid descriptor and an int option of the size given.
        let _ = unsafe {
            libc::setsockopt(
                tcp.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_TIMESTAMPNS,
                (&on as *const libc::c_int).cast(),
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            )
        };
        // SAFETY: the `TcpStream` moves into the `AsyncFd` and its descriptor is neither
        // closed nor replaced while registered; it is dropped with the registration.
        let io = unsafe { AsyncFd::register(tcp) }?;
        // Both clocks' starting points, before any stamp can be read against them.
        let _ = unstepped_wall_clock();
        Ok(StampedTcp {
            io,
            arrived_ns: 0,
            shared: None,
        })
    }

    pub fn get_ref(&self) -> &std::net::TcpStream {
        self.io.get_ref()
    }

    /// How long ago the newest bytes of the last read reached this machine; `None` without a
    /// stamp, or with one a wall-clock step made meaningless.
    pub fn waited(&self) -> Option<Duration> {
        waited_since(self.arrived_ns)
    }

    /// The wall-clock arrival of the newest bytes the last read returned (ns since the
    /// epoch; 0: none), to keep past the stream itself; read it with [`waited_since`].
    pub fn arrived_ns(&self) -> u64 {
        self.arrived_ns
    }

    /// A cell every read's stamp is also written to, for a session that reads through a
    /// split half and so cannot ask the stream itself; read it with [`waited_since`].
    pub fn share_stamps(&mut self) -> Arc<AtomicU64> {
        self.shared
            .get_or_insert_with(|| Arc::new(AtomicU64::new(self.arrived_ns)))
            .clone()
    }
}

/// How long ago bytes stamped `arrived_ns` (ns since the epoch; 0: no stamp) reached this
/// machine, as [`StampedTcp::waited`].
pub fn waited_since(arrived_ns: u64) -> Option<Duration> {
    if arrived_ns == 0 {
        return None;
    }
    let now = unstepped_wall_clock()?.duration_since(UNIX_EPOCH).ok()?;
    let waited = now.checked_sub(Duration::from_nanos(arrived_ns))?;
    (waited <= MAX_PLAUSIBLE_WAIT).then_some(waited)
}

/// One `recvmsg` into `buf`: the bytes read and the arrival stamp (ns since the epoch) the
/// kernel attached, if any.
fn recv_stamped(fd: i32, buf: &mut [std::mem::MaybeUninit<u8>]) -> io::Result<(usize, u64)> {
    let mut iov = libc::iovec {
        iov_base: buf.as_mut_ptr().cast(),
        iov_len: buf.len(),
    };
    // Room for one `timespec` control message (CMSG_SPACE(16) = 32 on 64-bit Linux), aligned
    // as a `cmsghdr` must be.
    let mut control = [0u64; 8];
    // SAFETY: msghdr is plain data; every pointer set below outlives the call.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control.as_mut_ptr().cast();
    msg.msg_controllen = std::mem::size_of_val(&control) as _;
    // SAFETY: `msg` describes live buffers of the lengths given.
    let n = unsafe { libc::recvmsg(fd, &mut msg, libc::MSG_DONTWAIT) };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    let mut stamp = 0;
    // SAFETY: the kernel filled `msg_controllen` bytes of `control`; CMSG_FIRSTHDR/NXTHDR
    // stay within them, and a header's data is read unaligned and only when long enough.
    unsafe {
        let mut cmsg = libc::CMSG_FIRSTHDR(&msg);
        while !cmsg.is_null() {
            let header = &*cmsg;
            let data_len = (header.cmsg_len as usize).saturating_sub(libc::CMSG_LEN(0) as usize);
            if header.cmsg_level == libc::SOL_SOCKET
                && header.cmsg_type == libc::SCM_TIMESTAMPNS
                && data_len >= std::mem::size_of::<libc::timespec>()
            {
                let ts: libc::timespec = std::ptr::read_unaligned(libc::CMSG_DATA(cmsg).cast());
                if ts.tv_sec > 0 {
                    stamp = ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64;
                }
            }
            cmsg = libc::CMSG_NXTHDR(&msg, cmsg);
        }
    }
    Ok((n as usize, stamp))
}

impl AsyncRead for StampedTcp {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        if buf.remaining() == 0 {
            return Poll::Ready(Ok(()));
        }
        loop {
            let mut guard = ready!(this.io.poll_read_ready(cx))?;
            let fd = guard.get_inner().as_raw_fd();
            // SAFETY: `recv_stamped` only writes into the unfilled part, and exactly the `n`
            // bytes it reports are marked filled.
            let unfilled = unsafe { buf.unfilled_mut() };
            let len = unfilled.len();
            match recv_stamped(fd, unfilled) {
                Ok((n, stamp)) => {
                    // A short read emptied the socket: waiting for the next edge saves the
                    // read that would only say so (tokio's own streams do the same).
                    if n > 0 && n < len {
                        guard.clear_ready();
                    }
                    if stamp != 0 {
                        this.arrived_ns = stamp;
                        if let Some(shared) = &this.shared {
                            shared.store(stamp, Relaxed);
                        }
                    }
                    // SAFETY: the kernel wrote `n` bytes into the unfilled part.
                    unsafe { buf.assume_init(n) };
                    buf.advance(n);
                    return Poll::Ready(Ok(()));
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => guard.clear_ready(),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Poll::Ready(Err(e)),
            }
        }
    }
}

impl StampedTcp {
    /// Runs `write` once the socket can take bytes, again after each would-block.
    fn poll_write_with(
        &self,
        cx: &mut Context<'_>,
        mut write: impl FnMut(&mut &std::net::TcpStream) -> io::Result<usize>,
    ) -> Poll<io::Result<usize>> {
        loop {
            let mut guard = ready!(self.io.poll_write_ready(cx))?;
            if let Ok(result) = guard.try_io(|tcp| write(&mut tcp.get_ref())) {
                return Poll::Ready(result);
            }
        }
    }
}

impl AsyncWrite for StampedTcp {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.poll_write_with(cx, |tcp| io::Write::write(tcp, buf))
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        self.poll_write_with(cx, |tcp| io::Write::write_vectored(tcp, bufs))
    }

    fn is_write_vectored(&self) -> bool {
        true
    }

    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(self.io.get_ref().shutdown(Shutdown::Write))
    }
}

/// A stamping connection on which a stamp has been seen: while it is held, Linux keeps
/// stamping switched on, so a test's own connections get stamps from their first segment.
/// The kernel turns stamping on a moment after the first socket asks (from a work queue) and
/// off again once the last such socket is gone, so without it a test's first answers may come
/// unstamped.
#[cfg(test)]
pub(crate) async fn stamping_switched_on() -> (StampedTcp, tokio::net::TcpStream) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let (mut client, mut server) = tests::pair().await;
    let mut buf = [0u8; 64];
    for _ in 0..100 {
        server.write_all(b"w").await.unwrap();
        assert_eq!(client.read(&mut buf).await.unwrap(), 1);
        if client.waited().is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(
        client.waited().is_some(),
        "the kernel stamps arriving segments"
    );
    (client, server)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    pub(super) async fn pair() -> (StampedTcp, tokio::net::TcpStream) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let client = tokio::net::TcpStream::connect(addr).await.unwrap();
        let (server, _) = listener.accept().await.unwrap();
        (StampedTcp::new(client).unwrap(), server)
    }

    #[tokio::test(flavor = "current_thread")]
    async fn a_read_carries_how_long_its_bytes_waited_in_the_socket() {
        let (client, _) = pair().await;
        assert_eq!(client.waited(), None, "no read yet, no stamp");
        let (mut client, mut server) = stamping_switched_on().await;
        let mut buf = [0u8; 64];
        server.write_all(b"first").await.unwrap();
        // The bytes sit in the client's socket for 80 ms before anyone reads them.
        tokio::time::sleep(Duration::from_millis(80)).await;
        let n = client.read(&mut buf).await.unwrap();
        assert_eq!(&buf[..n], b"first");
        let waited = client.waited().expect("the kernel stamped the segment");
        assert!(
            waited >= Duration::from_millis(80) && waited < Duration::from_millis(1000),
            "{waited:?}"
        );
        // Read at once: the wait is near nothing, and the stamp is the new bytes'.
        server.write_all(b"second").await.unwrap();
        let n = client.read(&mut buf).await.unwrap();
        assert_eq!(&buf[..n], b"second");
        let waited = client.waited().unwrap();
        assert!(waited < Duration::from_millis(50), "{waited:?}");
    }

    #[test]
    fn a_wall_clock_that_jumped_is_not_trusted() {
        let s = Duration::from_secs;
        let ms = Duration::from_millis;
        assert!(same_distance(Some(s(30)), s(30)));
        assert!(
            same_distance(Some(s(30) + ms(1)), s(30)),
            "within a millisecond"
        );
        assert!(!same_distance(Some(s(31)), s(30)), "stepped ahead");
        assert!(!same_distance(Some(s(29)), s(30)), "stepped back");
        assert!(!same_distance(None, s(30)), "stepped back before the start");
        // The live clocks, unstepped on this machine, are trusted.
        assert!(unstepped_wall_clock().is_some());
    }

    #[tokio::test(flavor = "current_thread")]
    async fn writes_reads_and_end_of_stream_pass_through_unchanged() {
        let (mut client, mut server) = pair().await;
        let payload: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
        let sent = payload.clone();
        let writer = tokio::spawn(async move {
            server.write_all(&sent).await.unwrap();
            let mut back = Vec::new();
            server.read_to_end(&mut back).await.unwrap();
            back
        });
        let mut got = vec![0u8; payload.len()];
        client.read_exact(&mut got).await.unwrap();
        assert_eq!(got, payload);
        client.write_all(b"reply").await.unwrap();
        client.shutdown().await.unwrap();
        assert_eq!(writer.await.unwrap(), b"reply");
        let mut rest = Vec::new();
        assert_eq!(client.read_to_end(&mut rest).await.unwrap(), 0);
    }
}
