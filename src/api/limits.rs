//! Request-level protection of the API against clients that send too much: load shedding
//! (`HTTP_MAX_IN_FLIGHT`) and write rate limits per client address (`RATE_LIMIT_WRITES`), with the
//! client address taken from `X-Forwarded-For` only behind a proxy listed in `TRUSTED_PROXIES`.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::num::NonZeroU32;
use std::str::FromStr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use axum::error_handling::HandleErrorLayer;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{header, HeaderMap, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::Router;
use governor::clock::Clock;
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use ipnet::IpNet;
use tower::limit::GlobalConcurrencyLimitLayer;
use tower::ServiceBuilder;

use super::{ApiError, AppState};

/// A write rate per client address: `PER_SECOND[,BURST]` (burst defaults to the rate), e.g.
/// `RATE_LIMIT_WRITES=10,50`.
///
/// ```
/// use product_pipeline::api::WriteRate;
///
/// let rate: WriteRate = "10,50".parse().unwrap();
/// assert_eq!((rate.per_second.get(), rate.burst.get()), (10, 50));
/// assert_eq!("5".parse::<WriteRate>().unwrap().burst.get(), 5);
/// assert!("0".parse::<WriteRate>().is_err());
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WriteRate {
    /// Sustained writes per second.
    pub per_second: NonZeroU32,
    /// Writes allowed at once after a quiet period.
    pub burst: NonZeroU32,
}

impl FromStr for WriteRate {
    type Err = String;

    fn from_str(raw: &str) -> Result<Self, Self::Err> {
        let number = |part: &str| {
            part.trim().parse::<NonZeroU32>().map_err(|_| {
                format!("`{raw}` is not PER_SECOND[,BURST] with whole numbers above 0")
            })
        };
        let (rate, burst) = match raw.split_once(',') {
            Some((rate, burst)) => (number(rate)?, number(burst)?),
            None => (number(raw)?, number(raw)?),
        };
        Ok(WriteRate {
            per_second: rate,
            burst,
        })
    }
}

/// Proxies whose `X-Forwarded-For` is believed: addresses or networks (`10.0.0.0/8`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TrustedProxies(pub Vec<IpNet>);

impl FromStr for TrustedProxies {
    type Err = String;

    /// A comma-separated list of addresses and CIDR networks.
    fn from_str(raw: &str) -> Result<Self, Self::Err> {
        raw.split(',')
            .map(str::trim)
            .filter(|part| !part.is_empty())
            .map(|part| {
                part.parse::<IpNet>()
                    .or_else(|_| part.parse::<IpAddr>().map(IpNet::from))
                    .map_err(|_| format!("`{part}` is neither an IP address nor a CIDR network"))
            })
            .collect::<Result<_, _>>()
            .map(TrustedProxies)
    }
}

impl TrustedProxies {
    fn trusts(&self, ip: IpAddr) -> bool {
        let ip = ip.to_canonical();
        self.0.iter().any(|net| net.contains(&ip))
    }

    /// The client a request comes from: its peer, unless the peer is a trusted proxy, then the
    /// rightmost address of `X-Forwarded-For` that is not a trusted proxy (the ones to its left
    /// were written by the client and prove nothing).
    pub fn client(&self, peer: IpAddr, headers: &HeaderMap) -> IpAddr {
        let peer = peer.to_canonical();
        if !self.trusts(peer) {
            return peer;
        }
        let mut client = peer;
        let hops = headers
            .get_all("x-forwarded-for")
            .iter()
            .filter_map(|value| value.to_str().ok())
            .flat_map(|value| value.split(','))
            .collect::<Vec<_>>();
        for hop in hops.iter().rev() {
            match hop.trim().parse::<IpAddr>() {
                Ok(ip) => {
                    client = ip.to_canonical();
                    if !self.trusts(ip) {
                        break;
                    }
                }
                // A malformed entry: stop at the last address we could read.
                Err(_) => break,
            }
        }
        client
    }
}

/// The peer address of a request (served by [`crate::server`]); unspecified when the router is
/// driven without a connection (tests, `oneshot`).
fn peer(request: &Request) -> IpAddr {
    request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED), |info| info.0.ip())
}

/// The token buckets of writes, one per client address.
pub(super) struct WriteLimiter {
    buckets: DefaultKeyedRateLimiter<IpAddr>,
    trusted: TrustedProxies,
    checks: AtomicU64,
}

impl WriteLimiter {
    pub(super) fn new(rate: WriteRate, trusted: TrustedProxies) -> Arc<WriteLimiter> {
        let quota = Quota::per_second(rate.per_second).allow_burst(rate.burst);
        Arc::new(WriteLimiter {
            buckets: RateLimiter::keyed(quota),
            trusted,
            checks: AtomicU64::new(0),
        })
    }

    /// `Err(seconds to wait)` when `client` has no write left in its bucket.
    fn check(&self, client: IpAddr) -> Result<(), u64> {
        // Buckets of clients that stopped writing are full again and hold nothing: drop them
        // now and then so that many addresses do not grow the map without bound.
        if self.checks.fetch_add(1, Ordering::Relaxed) % 4096 == 4095 {
            self.buckets.retain_recent();
        }
        self.buckets.check_key(&client).map_err(|not_until| {
            let wait = not_until.wait_time_from(self.buckets.clock().now());
            wait.as_secs() + u64::from(wait.subsec_nanos() > 0)
        })
    }
}

/// Middleware: writes (anything but `GET`, `HEAD` and `OPTIONS`) over the client's rate get 429
/// with `Retry-After`; with no limiter, nothing is limited.
pub(super) async fn limit_writes(
    State(limiter): State<Option<Arc<WriteLimiter>>>,
    request: Request,
    next: Next,
) -> Response {
    let Some(limiter) = limiter else {
        return next.run(request).await;
    };
    if matches!(
        *request.method(),
        Method::GET | Method::HEAD | Method::OPTIONS
    ) {
        return next.run(request).await;
    }
    let client = limiter.trusted.client(peer(&request), request.headers());
    match limiter.check(crate::server::client_key(client)) {
        Ok(()) => next.run(request).await,
        Err(retry_after) => {
            metrics::counter!("http_requests_rate_limited_total").increment(1);
            let error = ApiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                "rate_limited",
                format!("too many writes from {client}; retry after {retry_after} s"),
            );
            (
                [(header::RETRY_AFTER, retry_after.max(1).to_string())],
                error,
            )
                .into_response()
        }
    }
}

/// `routes` answering 503 with `Retry-After` at once while `max_in_flight` requests of them are
/// being handled, instead of queueing without bound.
pub(super) fn shed_load(routes: Router<AppState>, max_in_flight: usize) -> Router<AppState> {
    routes.route_layer(
        ServiceBuilder::new()
            .layer(HandleErrorLayer::new(|_: tower::BoxError| async {
                metrics::counter!("http_requests_shed_total").increment(1);
                let error = ApiError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "overloaded",
                    "the server is handling as many requests as it can; retry shortly",
                );
                ([(header::RETRY_AFTER, "1")], error)
            }))
            .load_shed()
            // One semaphore for every route (a plain `ConcurrencyLimitLayer` gives each its own).
            .layer(GlobalConcurrencyLimitLayer::new(max_in_flight)),
    )
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use axum::body::Body;
    use axum::routing::get;
    use tokio::sync::Notify;
    use tower::ServiceExt;

    use super::*;

    fn headers(forwarded: &[&str]) -> HeaderMap {
        let mut headers = HeaderMap::new();
        for value in forwarded {
            headers.append("x-forwarded-for", value.parse().unwrap());
        }
        headers
    }

    fn ip(raw: &str) -> IpAddr {
        raw.parse().unwrap()
    }

    #[test]
    fn forwarded_for_is_believed_only_from_trusted_proxies() {
        let trusted: TrustedProxies = "10.0.0.0/8, 192.0.2.7".parse().unwrap();
        let forged = headers(&["203.0.113.9"]);
        assert_eq!(
            trusted.client(ip("198.51.100.1"), &forged),
            ip("198.51.100.1")
        );
        assert_eq!(trusted.client(ip("10.1.2.3"), &forged), ip("203.0.113.9"));
        // The client wrote the left part; our proxies appended the right one.
        let chained = headers(&["1.1.1.1, 203.0.113.9", "10.9.9.9"]);
        assert_eq!(trusted.client(ip("192.0.2.7"), &chained), ip("203.0.113.9"));
        assert_eq!(
            trusted.client(ip("10.1.2.3"), &headers(&[])),
            ip("10.1.2.3")
        );
        assert_eq!(
            TrustedProxies::default().client(ip("10.1.2.3"), &forged),
            ip("10.1.2.3")
        );
        assert!("10.0.0.0/33".parse::<TrustedProxies>().is_err());
        // A dual-stack listener sees IPv4 peers as IPv4-mapped IPv6.
        assert_eq!(
            trusted.client(ip("::ffff:10.1.2.3"), &forged),
            ip("203.0.113.9")
        );
    }

    fn write_from(client: &str) -> Request {
        let mut request = Request::post("/users").body(Body::empty()).unwrap();
        let peer: SocketAddr = format!("{client}:4000").parse().unwrap();
        request.extensions_mut().insert(ConnectInfo(peer));
        request
    }

    fn limited(rate: &str, trusted: &str) -> Router {
        let limiter = WriteLimiter::new(rate.parse().unwrap(), trusted.parse().unwrap());
        Router::new()
            .route(
                "/users",
                get(|| async { "read" }).post(|| async { "written" }),
            )
            .layer(axum::middleware::from_fn_with_state(
                Some(limiter),
                limit_writes,
            ))
    }

    /// `app`'s answer to a write from `peer`.
    async fn write(app: &Router, peer: &str) -> Response {
        app.clone().oneshot(write_from(peer)).await.unwrap()
    }

    #[tokio::test]
    async fn a_burst_over_the_bucket_gets_429_per_address() {
        let app = limited("1,3", "");
        for _ in 0..3 {
            assert_eq!(write(&app, "198.51.100.1").await.status(), StatusCode::OK);
        }
        let limited = write(&app, "198.51.100.1").await;
        assert_eq!(limited.status(), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(limited.headers()[header::RETRY_AFTER], "1");
        let body = axum::body::to_bytes(limited.into_body(), 4096)
            .await
            .unwrap();
        assert!(String::from_utf8_lossy(&body).contains("\"code\":\"rate_limited\""));
        // Another address has its own bucket; reads are never limited.
        assert_eq!(write(&app, "198.51.100.2").await.status(), StatusCode::OK);
        let mut read = Request::get("/users").body(Body::empty()).unwrap();
        read.extensions_mut().insert(ConnectInfo::<SocketAddr>(
            "198.51.100.1:4000".parse().unwrap(),
        ));
        assert_eq!(app.oneshot(read).await.unwrap().status(), StatusCode::OK);
    }

    #[tokio::test]
    async fn a_client_within_its_rate_is_never_limited() {
        let app = limited("20,1", "");
        for _ in 0..30 {
            assert_eq!(write(&app, "198.51.100.1").await.status(), StatusCode::OK);
            // governor reads the real clock: pace by it.
            std::thread::sleep(std::time::Duration::from_millis(55));
        }
    }

    /// The status of a write from `peer` that says it forwards for `203.0.113.<n>`.
    async fn forwarded_write(app: &Router, peer: &str, n: u8) -> StatusCode {
        let mut request = write_from(peer);
        request
            .headers_mut()
            .insert("x-forwarded-for", format!("203.0.113.{n}").parse().unwrap());
        app.clone().oneshot(request).await.unwrap().status()
    }

    #[tokio::test]
    async fn forged_forwarded_for_does_not_buy_a_fresh_bucket() {
        let app = limited("1,1", "10.0.0.0/8");
        let untrusted = "198.51.100.1";
        assert_eq!(forwarded_write(&app, untrusted, 1).await, StatusCode::OK);
        assert_eq!(
            forwarded_write(&app, untrusted, 2).await,
            StatusCode::TOO_MANY_REQUESTS
        );
        // Through a trusted proxy each forwarded client has its own bucket.
        let proxy = "10.0.0.5";
        assert_eq!(forwarded_write(&app, proxy, 1).await, StatusCode::OK);
        assert_eq!(forwarded_write(&app, proxy, 2).await, StatusCode::OK);
        assert_eq!(
            forwarded_write(&app, proxy, 1).await,
            StatusCode::TOO_MANY_REQUESTS
        );
    }

    #[tokio::test]
    async fn load_is_shed_above_the_in_flight_limit_and_recovers_below_it() {
        let release = Arc::new(Notify::new());
        let gate = release.clone();
        let routes = Router::new().route(
            "/slow",
            get(move || {
                let gate = gate.clone();
                async move {
                    gate.notified().await;
                    "done"
                }
            }),
        );
        let app = shed_load(routes, 2)
            .route("/healthz", get(|| async { "ok" }))
            .with_state(dummy_state());
        let get = |path: &str| Request::get(path).body(Body::empty()).unwrap();
        let first = tokio::spawn(app.clone().oneshot(get("/slow")));
        let second = tokio::spawn(app.clone().oneshot(get("/slow")));
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        let shed = app.clone().oneshot(get("/slow")).await.unwrap();
        assert_eq!(shed.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(shed.headers()[header::RETRY_AFTER], "1");
        let health = app.clone().oneshot(get("/healthz")).await.unwrap();
        assert_eq!(
            health.status(),
            StatusCode::OK,
            "operations routes are not shed"
        );
        release.notify_waiters();
        assert_eq!(first.await.unwrap().unwrap().status(), StatusCode::OK);
        assert_eq!(second.await.unwrap().unwrap().status(), StatusCode::OK);
        let again = tokio::spawn(app.clone().oneshot(get("/slow")));
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        release.notify_waiters();
        assert_eq!(again.await.unwrap().unwrap().status(), StatusCode::OK);
    }

    fn dummy_state() -> AppState {
        let repo = Arc::new(mq_core::domain::MockProductRepo::new());
        AppState::new(
            Arc::new(mq_core::domain::MockUserRepo::new()),
            repo,
            product_pipeline_imaging::media::MediaStore::in_memory(),
        )
    }
}
