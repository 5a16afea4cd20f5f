//! Connections per client address (issue 9, finding 4): at most [`PER_ADDRESS`] open
//! connections from one address (an IPv6 /64 counts as one, as for sign-in
//! lock-outs); one more is closed as soon as it is accepted, before its TLS handshake
//! costs anything. With the handshake and header timeouts of
//! [`crate::server::ConnLimits`], one client cannot hold the server's connections (or
//! its memory) to itself.

use std::collections::HashMap;
use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use axum_server::accept::Accept;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tracing::debug;

use crate::throttle::address_key;

/// Open connections one client address may have.
pub const PER_ADDRESS: usize = 64;

/// An acceptor (the innermost one, under TLS) that refuses a connection from an
/// address that already has `max` open.
#[derive(Clone)]
pub struct PerAddress {
    max: usize,
    open: Arc<Mutex<HashMap<String, usize>>>,
}

impl PerAddress {
    pub fn new(max: usize) -> Self {
        PerAddress {
            max,
            open: Arc::default(),
        }
    }

    /// Connections open now from `addr`'s counting unit.
    pub fn open_from(&self, addr: &str) -> usize {
        let open = self.open.lock().unwrap_or_else(|p| p.into_inner());
        open.get(&address_key(addr)).copied().unwrap_or(0)
    }

    fn acquire(&self, key: String) -> Option<Slot> {
        let mut open = self.open.lock().unwrap_or_else(|p| p.into_inner());
        let n = open.entry(key.clone()).or_insert(0);
        if *n >= self.max {
            return None;
        }
        *n += 1;
        Some(Slot {
            open: self.open.clone(),
            key,
        })
    }
}

/// One open connection's place; freed when the connection is dropped.
struct Slot {
    open: Arc<Mutex<HashMap<String, usize>>>,
    key: String,
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut open = self.open.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(n) = open.get_mut(&self.key) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                open.remove(&self.key);
            }
        }
    }
}

/// A connection that holds its place while it lives.
pub struct Counted<T> {
    inner: T,
    _slot: Slot,
}

impl<S> Accept<TcpStream, S> for PerAddress {
    type Stream = Counted<TcpStream>;
    type Service = S;
    type Future = std::future::Ready<io::Result<(Self::Stream, S)>>;

    fn accept(&self, stream: TcpStream, service: S) -> Self::Future {
        let key = match stream.peer_addr() {
            Ok(a) => address_key(&a.ip().to_string()),
            Err(e) => return std::future::ready(Err(e)),
        };
        std::future::ready(match self.acquire(key) {
            Some(slot) => Ok((
                Counted {
                    inner: stream,
                    _slot: slot,
                },
                service,
            )),
            None => {
                debug!("connection refused: too many open from its address");
                Err(io::Error::new(
                    io::ErrorKind::ConnectionRefused,
                    "too many connections from this address",
                ))
            }
        })
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for Counted<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Counted<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }
    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}
