//! A client's byte stream to the target, plain or TLS, over a [`StampedTcp`] so that what it
//! reads carries its arrival time. Owns opening the TLS layer and reaching the stamps
//! through it; not what the bytes mean (each protocol's session) nor the TCP connect
//! (`source`).

use super::ConnectError;
use super::stamped_tcp::StampedTcp;
use crate::metrics::ErrorKind;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

pub enum ByteStream {
    Plain(StampedTcp),
    /// Boxed: rustls's connection state is over 1 KB, and most streams are plain.
    Tls(Box<tokio_rustls::client::TlsStream<StampedTcp>>),
}

impl ByteStream {
    /// Runs the TLS handshake over `tcp` for the server `host` (an IP address or a DNS name,
    /// IPv6 with or without brackets).
    pub async fn tls(
        tcp: StampedTcp,
        config: Arc<rustls::ClientConfig>,
        host: &str,
    ) -> Result<ByteStream, ConnectError> {
        let name =
            rustls::pki_types::ServerName::try_from(host.trim_matches(['[', ']']).to_string())
                .map_err(|_| {
                    ConnectError::new(ErrorKind::Tls, format!("`{host}` is not a TLS server name"))
                })?;
        Self::tls_named(tcp, config, name).await
    }

    /// As [`ByteStream::tls`], with the server's name already checked.
    pub async fn tls_named(
        tcp: StampedTcp,
        config: Arc<rustls::ClientConfig>,
        name: rustls::pki_types::ServerName<'static>,
    ) -> Result<ByteStream, ConnectError> {
        let tls = tokio_rustls::TlsConnector::from(config)
            .connect(name, tcp)
            .await
            .map_err(|e| ConnectError::new(ErrorKind::Tls, e.to_string()))?;
        Ok(ByteStream::Tls(Box::new(tls)))
    }

    /// When the newest bytes of the last read reached this machine (ns since the epoch; 0:
    /// no stamp), see [`StampedTcp`].
    pub fn arrived_ns(&self) -> u64 {
        self.tcp().arrived_ns()
    }

    pub fn tcp(&self) -> &StampedTcp {
        match self {
            ByteStream::Plain(s) => s,
            ByteStream::Tls(s) => s.get_ref().0,
        }
    }

    /// A cell every read's stamp is also written to (see [`StampedTcp::share_stamps`]).
    pub fn share_stamps(&mut self) -> Arc<std::sync::atomic::AtomicU64> {
        match self {
            ByteStream::Plain(s) => s.share_stamps(),
            ByteStream::Tls(s) => s.get_mut().0.share_stamps(),
        }
    }

    pub fn is_tls(&self) -> bool {
        matches!(self, ByteStream::Tls(_))
    }
}

impl AsyncRead for ByteStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            ByteStream::Plain(s) => Pin::new(s).poll_read(cx, buf),
            ByteStream::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for ByteStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            ByteStream::Plain(s) => Pin::new(s).poll_write(cx, buf),
            ByteStream::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            ByteStream::Plain(s) => Pin::new(s).poll_flush(cx),
            ByteStream::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            ByteStream::Plain(s) => Pin::new(s).poll_shutdown(cx),
            ByteStream::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
}
