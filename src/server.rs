//! The HTTP server: an accept loop over hyper that bounds what clients can hold.
//!
//! `axum::serve` sets no timer, so a client that trickles a request head one line every few
//! seconds keeps its connection forever, and enough of them exhaust the process's file
//! descriptors. This loop serves each connection with hyper's HTTP/1 builder and:
//!
//! - a **header timeout** for the whole request head, whatever trickles in; hyper also runs it
//!   while a keep-alive connection waits for its next request, so it is the idle timeout too;
//! - a cap on **open connections**, and one per **client address**, so that one address cannot take
//!   them all; a connection over a cap is closed at once, before anything is read from it, and
//!   counted in `http_connections_rejected_total` by `reason`;
//! - **graceful shutdown**: on `shutdown` it stops accepting, lets in-flight requests finish and
//!   closes idle connections.
//!
//! Every request carries the peer address as [`axum::extract::ConnectInfo<SocketAddr>`].

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::ConnectInfo;
use axum::Router;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use parking_lot::Mutex;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;
use tracing::warn;

/// Limits of the connection layer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectionLimits {
    /// Time a client has to send a whole request head; also how long an idle keep-alive
    /// connection is kept.
    pub header_timeout: Duration,
    /// Most connections open at once.
    pub max_connections: usize,
    /// Most connections open at once from one client address.
    pub max_per_client: usize,
}

impl ConnectionLimits {
    /// Limits for a process whose descriptor limit is `descriptors`: three quarters of it for
    /// connections (the rest for the database, the broker and files); see
    /// [`ConnectionLimits::for_connections`].
    pub fn for_descriptors(descriptors: u64) -> ConnectionLimits {
        Self::for_connections((descriptors.saturating_mul(3) / 4).max(1) as usize)
    }

    /// At most `max_connections` open connections, an eighth of them per client address, 10 s
    /// for a request head.
    pub fn for_connections(max_connections: usize) -> ConnectionLimits {
        ConnectionLimits {
            header_timeout: Duration::from_secs(10),
            max_connections,
            max_per_client: (max_connections / 8).max(1),
        }
    }
}

/// The soft limit of open file descriptors of this process (`ulimit -n`).
pub fn descriptor_limit() -> u64 {
    #[cfg(unix)]
    if let Ok((soft, _hard)) = rlimit::Resource::NOFILE.get() {
        return soft;
    }
    1024
}

/// Open connections, in all and by client address.
#[derive(Default)]
struct Open {
    total: usize,
    by_client: HashMap<IpAddr, usize>,
}

/// Admits connections within the caps.
#[derive(Clone)]
struct Admission {
    limits: Arc<ConnectionLimits>,
    open: Arc<Mutex<Open>>,
}

/// An admitted connection; releases its place when dropped.
struct Admitted {
    admission: Admission,
    client: IpAddr,
}

impl Admission {
    /// A place for a connection from `client`, or the cap it is over.
    fn admit(&self, client: IpAddr) -> Result<Admitted, &'static str> {
        let mut open = self.open.lock();
        if open.total >= self.limits.max_connections {
            return Err("max_connections");
        }
        let from_client = open.by_client.entry(client).or_default();
        if *from_client >= self.limits.max_per_client {
            return Err("max_per_client");
        }
        *from_client += 1;
        open.total += 1;
        metrics::gauge!("http_connections_open").increment(1);
        Ok(Admitted {
            admission: self.clone(),
            client,
        })
    }
}

impl Drop for Admitted {
    fn drop(&mut self) {
        let mut open = self.admission.open.lock();
        open.total -= 1;
        if let Some(count) = open.by_client.get_mut(&self.client) {
            *count -= 1;
            if *count == 0 {
                open.by_client.remove(&self.client);
            }
        }
        metrics::gauge!("http_connections_open").decrement(1);
    }
}

/// Serves `app` on `listener` within `limits` until `shutdown` is cancelled, then waits up to
/// `grace` for the open connections to finish their requests and closes what is left.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    limits: ConnectionLimits,
    shutdown: CancellationToken,
    grace: Duration,
) {
    let admission = Admission {
        limits: Arc::new(limits),
        open: Arc::default(),
    };
    let graceful = GracefulShutdown::new();
    let mut connections = tokio::task::JoinSet::new();
    loop {
        while connections.try_join_next().is_some() {}
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            () = shutdown.cancelled() => break,
        };
        let (stream, peer) = match accepted {
            Ok(accepted) => accepted,
            Err(error) => {
                // Out of descriptors, most likely (the caps leave room, but other parts of the
                // process use them too): wait for some to be released instead of spinning.
                warn!(%error, "accepting a connection failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let admitted = match admission.admit(client_key(peer.ip())) {
            Ok(admitted) => admitted,
            Err(reason) => {
                metrics::counter!("http_connections_rejected_total", "reason" => reason)
                    .increment(1);
                drop(stream);
                continue;
            }
        };
        let app = app.clone();
        let service = hyper::service::service_fn(move |mut request: hyper::Request<_>| {
            request.extensions_mut().insert(ConnectInfo(peer));
            app.clone().oneshot(request)
        });
        let connection = http1::Builder::new()
            .timer(TokioTimer::new())
            .header_read_timeout(admission.limits.header_timeout)
            .serve_connection(TokioIo::new(stream), service);
        let connection = graceful.watch(connection);
        connections.spawn(async move {
            // Errors are the client's doing (reset, malformed, too slow): nothing to report.
            let _ = connection.await;
            drop(admitted);
        });
    }
    drop(listener);
    // A client that stops reading its response (or trickles a body) would hold shutdown forever.
    if tokio::time::timeout(grace, graceful.shutdown())
        .await
        .is_err()
    {
        warn!(
            open = connections.len(),
            "closing the connections still open after the shutdown grace"
        );
    }
    connections.shutdown().await;
}

/// The address a client is counted by: IPv4 peers of a dual-stack listener as IPv4, and IPv6
/// peers by their /64, the block one host usually gets (so that it cannot take a fresh address
/// for each connection).
pub fn client_key(ip: IpAddr) -> IpAddr {
    match ip.to_canonical() {
        IpAddr::V6(v6) => {
            let network = u128::from(v6) & !((1u128 << 64) - 1);
            IpAddr::V6(network.into())
        }
        v4 => v4,
    }
}

#[cfg(test)]
mod tests {
    use std::net::SocketAddr;
    use std::time::Instant;

    use axum::routing::get;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::{TcpSocket, TcpStream};

    use super::*;

    /// Serves `app` on a loopback port; the address, the shutdown token and the server task.
    async fn serve_on_loopback(
        app: Router,
        limits: ConnectionLimits,
        grace: Duration,
    ) -> (SocketAddr, CancellationToken, tokio::task::JoinHandle<()>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let shutdown = CancellationToken::new();
        let served = tokio::spawn(serve(listener, app, limits, shutdown.clone(), grace));
        (addr, shutdown, served)
    }

    /// A `/healthz` that answers the peer's address.
    async fn start(limits: ConnectionLimits) -> (SocketAddr, CancellationToken) {
        let app = Router::new().route(
            "/healthz",
            get(|ConnectInfo(peer): ConnectInfo<SocketAddr>| async move { peer.ip().to_string() }),
        );
        let (addr, shutdown, _) = serve_on_loopback(app, limits, Duration::from_secs(5)).await;
        (addr, shutdown)
    }

    /// Caps with a header timeout of `header_timeout_ms`.
    fn limits(
        max_connections: usize,
        max_per_client: usize,
        header_timeout_ms: u64,
    ) -> ConnectionLimits {
        ConnectionLimits {
            header_timeout: Duration::from_millis(header_timeout_ms),
            max_connections,
            max_per_client,
        }
    }

    /// Long enough that no connection in a cap test is closed by the header timeout.
    const NO_TIMEOUT: u64 = 60_000;

    /// True while the server keeps the connection open (nothing to read, no EOF).
    async fn still_open(stream: &mut TcpStream) -> bool {
        let mut buf = [0; 64];
        tokio::time::timeout(Duration::from_millis(200), stream.read(&mut buf))
            .await
            .is_err()
    }

    /// A connection from `from` (a loopback address).
    async fn connect_from(from: IpAddr, to: SocketAddr) -> TcpStream {
        let socket = TcpSocket::new_v4().unwrap();
        socket.bind(SocketAddr::new(from, 0)).unwrap();
        socket.connect(to).await.unwrap()
    }

    /// Sends one `GET /healthz` and returns the response text (up to the body).
    async fn get_healthz(stream: &mut TcpStream) -> String {
        stream
            .write_all(b"GET /healthz HTTP/1.1\r\nhost: x\r\n\r\n")
            .await
            .unwrap();
        let mut buf = vec![0; 1024];
        let n = tokio::time::timeout(Duration::from_secs(5), stream.read(&mut buf))
            .await
            .expect("an answer")
            .unwrap();
        String::from_utf8_lossy(&buf[..n]).into_owned()
    }

    /// True when the server closes the connection (EOF or reset) within `within`.
    async fn closed_within(stream: &mut TcpStream, within: Duration) -> bool {
        let mut buf = [0; 64];
        matches!(
            tokio::time::timeout(within, stream.read(&mut buf)).await,
            Ok(Ok(0) | Err(_))
        )
    }

    #[tokio::test]
    async fn a_head_trickled_in_slowly_is_cut_off_at_the_header_timeout() {
        let (addr, _shutdown) = start(limits(10, 10, 500)).await;
        let mut slow = TcpStream::connect(addr).await.unwrap();
        slow.write_all(b"GET /healthz HTTP/1.1\r\n").await.unwrap();
        let started = Instant::now();
        let mut buf = [0; 64];
        let closed = loop {
            // One header line every 100 ms: each arrives well within any per-read timeout.
            if slow.write_all(b"x-slow: 1\r\n").await.is_err() {
                break true;
            }
            match tokio::time::timeout(Duration::from_millis(100), slow.read(&mut buf)).await {
                Ok(Ok(0) | Err(_)) => break true,
                Ok(Ok(_)) => panic!("the server answered an incomplete head"),
                Err(_) => {}
            }
            if started.elapsed() > Duration::from_secs(10) {
                break false;
            }
        };
        assert!(closed, "a trickling head is never cut off");
    }

    #[tokio::test]
    async fn an_idle_connection_is_closed() {
        let (addr, _shutdown) = start(limits(10, 10, 500)).await;
        let mut idle = TcpStream::connect(addr).await.unwrap();
        assert!(closed_within(&mut idle, Duration::from_secs(5)).await);
        let mut kept_alive = TcpStream::connect(addr).await.unwrap();
        assert!(get_healthz(&mut kept_alive)
            .await
            .starts_with("HTTP/1.1 200"));
        assert!(
            closed_within(&mut kept_alive, Duration::from_secs(5)).await,
            "an idle keep-alive connection is closed too"
        );
    }

    #[tokio::test]
    async fn one_address_cannot_take_every_connection() {
        let (addr, _shutdown) = start(limits(4, 2, NO_TIMEOUT)).await;
        let local: IpAddr = "127.0.0.1".parse().unwrap();
        let other: IpAddr = "127.0.0.2".parse().unwrap();
        let mut held = [
            connect_from(local, addr).await,
            connect_from(local, addr).await,
        ];
        // Accepted connections are admitted in order: let the server take the two first.
        tokio::time::sleep(Duration::from_millis(100)).await;
        let mut third = connect_from(local, addr).await;
        assert!(
            closed_within(&mut third, Duration::from_millis(500)).await,
            "a third connection from the same address is closed at once"
        );
        for stream in &mut held {
            assert!(
                still_open(stream).await,
                "the connections within the cap stay open"
            );
        }
        let mut elsewhere = connect_from(other, addr).await;
        let answer = get_healthz(&mut elsewhere).await;
        assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
        assert!(
            answer.ends_with("127.0.0.2"),
            "the peer address reaches the handler: {answer}"
        );
    }

    #[tokio::test]
    async fn connections_over_the_total_cap_are_closed_and_places_are_given_back() {
        let (addr, _shutdown) = start(limits(2, 2, NO_TIMEOUT)).await;
        let local: IpAddr = "127.0.0.1".parse().unwrap();
        let other: IpAddr = "127.0.0.3".parse().unwrap();
        let mut held = [
            connect_from(local, addr).await,
            connect_from(local, addr).await,
        ];
        tokio::time::sleep(Duration::from_millis(100)).await;
        let mut over = connect_from(other, addr).await;
        assert!(closed_within(&mut over, Duration::from_millis(500)).await);
        for stream in &mut held {
            assert!(still_open(stream).await);
        }
        drop(held);
        tokio::time::sleep(Duration::from_millis(100)).await;
        let mut later = connect_from(other, addr).await;
        assert!(get_healthz(&mut later).await.starts_with("HTTP/1.1 200"));
    }

    #[test]
    fn clients_are_counted_by_ipv4_address_or_ipv6_block() {
        let key = |raw: &str| client_key(raw.parse().unwrap()).to_string();
        assert_eq!(key("192.0.2.1"), "192.0.2.1");
        assert_eq!(key("::ffff:192.0.2.1"), "192.0.2.1");
        assert_eq!(key("2001:db8:1:2:aaaa::1"), "2001:db8:1:2::");
        assert_eq!(key("2001:db8:1:2:bbbb::9"), key("2001:db8:1:2::1"));
    }

    #[tokio::test]
    async fn shutdown_does_not_wait_past_the_grace_for_a_client_that_stops_reading() {
        // A response far larger than the socket buffers, which this client never reads.
        let app = Router::new().route("/big", get(|| async { vec![b'x'; 64 << 20] }));
        let (addr, shutdown, served) =
            serve_on_loopback(app, limits(10, 10, NO_TIMEOUT), Duration::from_millis(300)).await;
        let mut stalled = TcpStream::connect(addr).await.unwrap();
        stalled
            .write_all(b"GET /big HTTP/1.1\r\nhost: x\r\n\r\n")
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(200)).await;
        shutdown.cancel();
        tokio::time::timeout(Duration::from_secs(10), served)
            .await
            .expect("serve returns once the grace is over")
            .unwrap();
    }

    #[test]
    fn defaults_leave_descriptors_for_the_rest_of_the_process() {
        let limits = ConnectionLimits::for_descriptors(1024);
        assert_eq!(limits.max_connections, 768);
        assert_eq!(limits.max_per_client, 96);
        assert_eq!(limits.header_timeout, Duration::from_secs(10));
    }
}
