//! Limits that keep one client, or a flood of them, from taking the whole server: open
//! connections, and request rates per address and per key.

use std::future::Future;
use std::net::IpAddr;
use std::num::NonZeroU32;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll};

use axum::extract::connect_info::Connected;
use axum::serve::{IncomingStream, Listener};
use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use super::error::ApiError;

/// Requests per second and burst for each client address and for each key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimit {
    pub per_sec: u32,
    pub burst: u32,
}

/// A token bucket per address and per key; both apply to every request over TCP.
pub struct RateLimits {
    per_address: Option<DefaultKeyedRateLimiter<IpAddr>>,
    per_key: Option<DefaultKeyedRateLimiter<String>>,
}

impl RateLimits {
    /// No limits when `per_sec` is 0.
    pub fn new(limit: RateLimit) -> RateLimits {
        let quota = NonZeroU32::new(limit.per_sec).map(|per_sec| {
            let burst = NonZeroU32::new(limit.burst.max(limit.per_sec)).unwrap_or(per_sec);
            Quota::per_second(per_sec).allow_burst(burst)
        });
        RateLimits {
            per_address: quota.map(RateLimiter::keyed),
            per_key: quota.map(RateLimiter::keyed),
        }
    }

    pub fn check_address(&self, address: IpAddr) -> Result<(), ApiError> {
        match &self.per_address {
            Some(limiter) => limiter
                .check_key(&address)
                .map_err(|not_until| too_many("this address", &not_until)),
            None => Ok(()),
        }
    }

    pub fn check_key(&self, key: &str) -> Result<(), ApiError> {
        match &self.per_key {
            Some(limiter) => limiter
                .check_key(&key.to_string())
                .map_err(|not_until| too_many("this key", &not_until)),
            None => Ok(()),
        }
    }

    /// Forgets clients whose buckets are full again, so memory follows the active clients.
    pub fn forget_idle(&self) {
        if let Some(limiter) = &self.per_address {
            limiter.retain_recent();
            limiter.shrink_to_fit();
        }
        if let Some(limiter) = &self.per_key {
            limiter.retain_recent();
            limiter.shrink_to_fit();
        }
    }
}

fn too_many(who: &str, not_until: &governor::NotUntil<governor::clock::QuantaInstant>) -> ApiError {
    let wait = not_until.wait_time_from(DefaultClock::default().now());
    ApiError::too_many(
        "rate_limited",
        format!(
            "too many requests from {who}; retry in {:.1}s (the server's --rate-limit)",
            wait.as_secs_f64()
        ),
        wait.as_secs_f64().ceil() as u64,
    )
}

/// A listener that counts open connections. Past the limit it still accepts, so that the
/// client gets a clear 503 instead of a hang or a reset; the request handler refuses such
/// connections (see [`Peer::over_limit`]).
pub struct Counted<L> {
    inner: L,
    open: Arc<AtomicUsize>,
    max: usize,
}

impl<L> Counted<L> {
    /// `open` is the count the limit applies to. The server gives TCP and the Unix socket a
    /// count each, so connections from the network never lock the machine's owner out.
    pub fn new(inner: L, open: Arc<AtomicUsize>, max: usize) -> Counted<L> {
        Counted { inner, open, max }
    }
}

/// How long a new connection may stay silent before its first request: without it, idle
/// connections would hold slots of the connection limit forever.
const FIRST_REQUEST_WAIT: std::time::Duration = std::time::Duration::from_secs(10);

/// A connection, counted while it is open.
pub struct CountedIo<I> {
    io: I,
    over_limit: bool,
    open: Arc<AtomicUsize>,
    /// Until the first bytes arrive: when they must have.
    first_bytes_by: Option<Pin<Box<tokio::time::Sleep>>>,
}

impl<I> Drop for CountedIo<I> {
    fn drop(&mut self) {
        self.open.fetch_sub(1, Ordering::Relaxed);
    }
}

impl<L: Listener> Listener for Counted<L> {
    type Io = CountedIo<L::Io>;
    type Addr = L::Addr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        let (io, addr) = self.inner.accept().await;
        let before = self.open.fetch_add(1, Ordering::Relaxed);
        let over_limit = before >= self.max;
        if over_limit {
            tracing::warn!(
                limit = self.max,
                "connection limit reached; refusing with 503"
            );
        }
        let io = CountedIo {
            io,
            over_limit,
            open: self.open.clone(),
            first_bytes_by: Some(Box::pin(tokio::time::sleep(FIRST_REQUEST_WAIT))),
        };
        (io, addr)
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        self.inner.local_addr()
    }
}

impl<I: AsyncRead + Unpin> AsyncRead for CountedIo<I> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let read = Pin::new(&mut self.io).poll_read(cx, buf);
        if let Some(deadline) = &mut self.first_bytes_by {
            if matches!(read, Poll::Ready(Ok(()))) && buf.filled().len() > before {
                self.first_bytes_by = None;
            } else if read.is_pending() && deadline.as_mut().poll(cx).is_ready() {
                return Poll::Ready(Err(std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    "no request within the first seconds of the connection",
                )));
            }
        }
        read
    }
}

impl<I: AsyncWrite + Unpin> AsyncWrite for CountedIo<I> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.io).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }
}

/// What a handler knows about the connection a request came on.
#[derive(Debug, Clone, Copy)]
pub struct Peer {
    /// The client's address; none on the Unix socket.
    pub ip: Option<IpAddr>,
    /// The connection was opened past the connection limit and gets only a 503.
    pub over_limit: bool,
}

/// Listener addresses that may carry an IP address.
pub trait PeerAddress {
    fn ip(&self) -> Option<IpAddr>;
}

impl PeerAddress for std::net::SocketAddr {
    fn ip(&self) -> Option<IpAddr> {
        Some(std::net::SocketAddr::ip(self))
    }
}

impl PeerAddress for tokio::net::unix::SocketAddr {
    fn ip(&self) -> Option<IpAddr> {
        None
    }
}

impl<L> Connected<IncomingStream<'_, Counted<L>>> for Peer
where
    L: Listener,
    L::Addr: PeerAddress,
{
    fn connect_info(stream: IncomingStream<'_, Counted<L>>) -> Peer {
        Peer {
            ip: stream.remote_addr().ip(),
            over_limit: stream.io().over_limit,
        }
    }
}
