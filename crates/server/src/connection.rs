//! One accepted connection: which HTTP it speaks, and serving it until it
//! ends, the server stops, or (HTTP/2) it has carried nothing for too long.
//!
//! A plain connection whose first bytes are HTTP/2's client preface (RFC 9113,
//! section 3.4: "prior knowledge", what a FrameX for Rust client configured
//! with `http2` sends) is served as HTTP/2; any other is HTTP/1, as Python
//! FrameX and every other client speak. The first bytes are read under the
//! header read timeout: a client that sends nothing is dropped as one that
//! sends no headers is. (hyper-util's `auto` builder reads them without a
//! timeout, which is why the choice is made here.) TLS connections are
//! HTTP/1.

use std::pin::{Pin, pin};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use hyper_util::server::graceful::GracefulConnection;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::sync::watch;
use tokio::time::Instant;

/// What an HTTP/2 client sends first (RFC 9113, section 3.4).
pub(crate) const H2_PREFACE: &[u8; 24] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// Which HTTP a connection speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Protocol {
    Http1,
    Http2,
}

/// The bytes read to tell the protocol, given back before the rest of the
/// stream.
#[derive(Debug, Default)]
pub(crate) struct Head {
    bytes: [u8; H2_PREFACE.len()],
    at: usize,
    len: usize,
}

/// Reads the first bytes of `stream`, as many as it takes to tell whether
/// they are HTTP/2's preface (one read for an HTTP/1 request, whose first
/// bytes differ from it by the second); `None` when the client closed first.
pub(crate) async fn sniff(stream: &mut TcpStream) -> std::io::Result<Option<(Head, Protocol)>> {
    let mut head = Head::default();
    loop {
        let read = stream.read(&mut head.bytes[head.len..]).await?;
        if read == 0 {
            return Ok(None);
        }
        head.len += read;
        if head.bytes[..head.len] != H2_PREFACE[..head.len] {
            return Ok(Some((head, Protocol::Http1)));
        }
        if head.len == H2_PREFACE.len() {
            return Ok(Some((head, Protocol::Http2)));
        }
    }
}

/// An accepted connection, plain (with the bytes [`sniff`] read) or TLS.
pub(crate) enum Stream {
    Plain(TcpStream, Head),
    Tls(Box<tokio_rustls::server::TlsStream<TcpStream>>),
}

impl AsyncRead for Stream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(_, head) if head.at < head.len => {
                let unread = &head.bytes[head.at..head.len];
                let n = unread.len().min(buf.remaining());
                buf.put_slice(&unread[..n]);
                head.at += n;
                Poll::Ready(Ok(()))
            }
            Stream::Plain(stream, _) => Pin::new(stream).poll_read(cx, buf),
            Stream::Tls(stream) => Pin::new(stream.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Stream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        match self.get_mut() {
            Stream::Plain(stream, _) => Pin::new(stream).poll_write(cx, buf),
            Stream::Tls(stream) => Pin::new(stream.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        match self.get_mut() {
            Stream::Plain(stream, _) => Pin::new(stream).poll_write_vectored(cx, bufs),
            Stream::Tls(stream) => Pin::new(stream.as_mut()).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            Stream::Plain(stream, _) => stream.is_write_vectored(),
            Stream::Tls(stream) => stream.is_write_vectored(),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(stream, _) => Pin::new(stream).poll_flush(cx),
            Stream::Tls(stream) => Pin::new(stream.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(stream, _) => Pin::new(stream).poll_shutdown(cx),
            Stream::Tls(stream) => Pin::new(stream.as_mut()).poll_shutdown(cx),
        }
    }
}

/// The requests in flight on an HTTP/2 connection and when the last one
/// ended: an HTTP/1 connection waiting for its next request is closed by its
/// header read timeout, an HTTP/2 one with no request by this.
#[derive(Debug)]
pub(crate) struct Activity {
    epoch: Instant,
    in_flight: AtomicUsize,
    /// Milliseconds after `epoch` at which the last request ended.
    last_ended_ms: AtomicU64,
}

impl Activity {
    pub(crate) fn new() -> Activity {
        Activity {
            epoch: Instant::now(),
            in_flight: AtomicUsize::new(0),
            last_ended_ms: AtomicU64::new(0),
        }
    }

    /// Counts a request until the guard is dropped.
    pub(crate) fn enter(self: &Arc<Self>) -> Active {
        self.in_flight.fetch_add(1, Ordering::Relaxed);
        Active(self.clone())
    }

    /// Completes once no request has been in flight for `timeout`.
    async fn idle_for(&self, timeout: Duration) {
        loop {
            let wake = if self.in_flight.load(Ordering::Relaxed) > 0 {
                Instant::now() + timeout
            } else {
                let ended =
                    self.epoch + Duration::from_millis(self.last_ended_ms.load(Ordering::Relaxed));
                let until = ended + timeout;
                if until <= Instant::now() {
                    return;
                }
                until
            };
            tokio::time::sleep_until(wake).await;
        }
    }
}

/// A request in flight on a connection ([`Activity::enter`]).
pub(crate) struct Active(Arc<Activity>);

impl Drop for Active {
    fn drop(&mut self) {
        let now = u64::try_from(self.0.epoch.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.0.last_ended_ms.store(now, Ordering::Relaxed);
        self.0.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Serves `connection` until it ends. When `stop` turns true it is closed
/// gracefully: an idle HTTP/1 connection at once, a busy one after its
/// answer; an HTTP/2 one is told (GOAWAY) which requests it will still
/// answer, so that a client knows the others never ran. With `idle`, the
/// same once no request has been in flight for its duration; and as HTTP/2's
/// graceful close waits for the client to answer a PING, a client that does
/// not within that duration again is cut off.
pub(crate) async fn serve<C: GracefulConnection>(
    connection: C,
    mut stop: watch::Receiver<bool>,
    idle: Option<(Arc<Activity>, Duration)>,
) {
    let mut connection = pin!(connection);
    let mut closing = false;
    let mut cut_off_at = None;
    loop {
        let quiet = async {
            match (&idle, cut_off_at) {
                (_, Some(at)) => tokio::time::sleep_until(at).await,
                (Some((activity, timeout)), None) => activity.idle_for(*timeout).await,
                (None, None) => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = connection.as_mut() => return,
            _ = stop.wait_for(|stop| *stop), if !closing => {}
            () = quiet => {
                if cut_off_at.is_some() {
                    return;
                }
                if let Some((_, timeout)) = &idle {
                    cut_off_at = Some(Instant::now() + *timeout);
                }
            }
        }
        if !closing {
            connection.as_mut().graceful_shutdown();
            closing = true;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn pair() -> (TcpStream, TcpStream) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let client = TcpStream::connect(listener.local_addr().unwrap())
            .await
            .unwrap();
        let (server, _) = listener.accept().await.unwrap();
        (client, server)
    }

    async fn sniffed(chunks: &[&[u8]]) -> (Option<Protocol>, Vec<u8>) {
        use tokio::io::AsyncWriteExt;
        let (mut client, mut server) = pair().await;
        for chunk in chunks {
            client.write_all(chunk).await.unwrap();
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        client.shutdown().await.unwrap();
        let Some((head, protocol)) = sniff(&mut server).await.unwrap() else {
            return (None, Vec::new());
        };
        let mut stream = Stream::Plain(server, head);
        let mut read = Vec::new();
        stream.read_to_end(&mut read).await.unwrap();
        (Some(protocol), read)
    }

    #[tokio::test]
    async fn the_preface_says_http2_and_every_byte_is_read_back_in_order() {
        let mut sent = H2_PREFACE.to_vec();
        sent.extend_from_slice(b"\0\0\0\x04\0\0\0\0\0");
        // In pieces, split inside the preface.
        let (protocol, read) = sniffed(&[&sent[..3], &sent[3..20], &sent[20..]]).await;
        assert_eq!(protocol, Some(Protocol::Http2));
        assert_eq!(read, sent);
    }

    #[tokio::test]
    async fn anything_else_is_http1_and_is_read_back_whole() {
        let request = b"POST /proxy/remote HTTP/1.1\r\nhost: a\r\ncontent-length: 0\r\n\r\n";
        let (protocol, read) = sniffed(&[request]).await;
        assert_eq!(protocol, Some(Protocol::Http1));
        assert_eq!(read, request);
        // A start like the preface's, then not.
        let (protocol, read) = sniffed(&[b"PRI * HTTP/1.1\r\n"]).await;
        assert_eq!(protocol, Some(Protocol::Http1));
        assert_eq!(read, b"PRI * HTTP/1.1\r\n");
        // Part of the preface, then the end of the stream.
        let (protocol, _) = sniffed(&[b"PRI * HT"]).await;
        assert_eq!(protocol, None);
    }
}
