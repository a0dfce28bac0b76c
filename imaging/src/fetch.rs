//! Safe HTTP(S) download of an image: scheme and address checks, redirect and size limits,
//! timeouts, transient/permanent error classification.
//!
//! The address check runs at connect time on the resolved addresses (a custom reqwest DNS
//! resolver drops every non-public address), so it also covers redirects and DNS rebinding.
//! reqwest does not call the resolver for IP-literal hosts, so those are checked before the
//! request and on every redirect by the redirect policy. Proxies from the environment are
//! ignored, since a proxy would resolve and connect on our behalf.

use std::collections::HashMap;
use std::error::Error as StdError;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use reqwest::dns::{Addrs, Name, Resolve, Resolving};
use reqwest::redirect::{Attempt, Policy};
use reqwest::Url;

use crate::address::non_public_reason;
use crate::budget::{MemoryBudget, Phase, Reservation};
use crate::config::ImagingConfig;
use crate::error::ImagingError;

/// A downloaded body.
#[derive(Debug, Clone)]
pub struct Fetched {
    /// The body, at most `max_bytes` long.
    pub bytes: Bytes,
    /// The URL the body came from, after redirects.
    pub final_url: Url,
    /// The `Content-Type` the server sent (informational only: the format is sniffed).
    pub content_type: Option<String>,
}

/// Which hosts may resolve to non-public addresses.
#[derive(Debug, Clone)]
struct AddressPolicy {
    allow_private: bool,
    allowlist: Arc<Vec<String>>,
}

impl AddressPolicy {
    fn check(&self, host: &str, ip: IpAddr) -> Result<(), ImagingError> {
        if self.allow_private || self.allowlist.iter().any(|h| h == host) {
            return Ok(());
        }
        match non_public_reason(ip) {
            None => Ok(()),
            Some(kind) => Err(ImagingError::BlockedAddress {
                host: host.to_string(),
                addr: Some(ip),
                kind,
            }),
        }
    }

    /// Checks a URL before it is requested: scheme, and the host when it is an IP literal.
    fn check_url(&self, url: &Url) -> Result<(), ImagingError> {
        match url.scheme() {
            "http" | "https" => {}
            other => {
                return Err(ImagingError::UnsupportedScheme {
                    scheme: other.to_string(),
                })
            }
        }
        match url.host() {
            None => Err(ImagingError::InvalidUrl {
                reason: "the URL has no host".into(),
            }),
            Some(url::Host::Ipv4(v4)) => self.check(&v4.to_string(), IpAddr::V4(v4)),
            Some(url::Host::Ipv6(v6)) => self.check(&format!("[{v6}]"), IpAddr::V6(v6)),
            Some(url::Host::Domain(_)) => Ok(()),
        }
    }
}

/// The error our resolver and redirect policy hand through reqwest, recovered by `classify`.
#[derive(Debug)]
struct Refused(ImagingError);

impl std::fmt::Display for Refused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

impl StdError for Refused {}

/// DNS resolver that filters out non-public addresses (unless allowed) after resolution.
#[derive(Debug, Clone)]
struct CheckedResolver {
    policy: AddressPolicy,
    static_hosts: Arc<HashMap<String, Vec<IpAddr>>>,
}

impl Resolve for CheckedResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let this = self.clone();
        let host = name.as_str().to_ascii_lowercase();
        Box::pin(async move {
            let resolved: Vec<IpAddr> = match this.static_hosts.get(&host) {
                Some(ips) => ips.clone(),
                None => tokio::net::lookup_host((host.as_str(), 0))
                    .await
                    .map_err(|e| {
                        Box::new(Refused(ImagingError::Dns {
                            host: host.clone(),
                            reason: e.to_string(),
                        })) as Box<dyn StdError + Send + Sync>
                    })?
                    .map(|sa| sa.ip())
                    .collect(),
            };
            let mut allowed = Vec::with_capacity(resolved.len());
            let mut first_refusal = None;
            for ip in resolved {
                match this.policy.check(&host, ip) {
                    Ok(()) => allowed.push(SocketAddr::new(ip, 0)),
                    Err(e) => {
                        first_refusal.get_or_insert(e);
                    }
                }
            }
            if allowed.is_empty() {
                let err = first_refusal.unwrap_or_else(|| ImagingError::Dns {
                    host: host.clone(),
                    reason: "no addresses".into(),
                });
                tracing::debug!(%host, error = %err, "resolver refused host");
                return Err(Box::new(Refused(err)) as Box<dyn StdError + Send + Sync>);
            }
            Ok(Box::new(allowed.into_iter()) as Addrs)
        })
    }
}

/// HTTP client enforcing the fetch limits of [`ImagingConfig`]. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Fetcher {
    client: reqwest::Client,
    policy: AddressPolicy,
    max_bytes: u64,
    max_redirects: usize,
    connect_timeout: Duration,
    total_timeout: Duration,
    retries: u32,
    backoff: Duration,
}

impl Fetcher {
    /// Builds the client (rustls, no proxy, checked resolver, checked redirects).
    pub fn new(config: &ImagingConfig) -> Result<Fetcher, ImagingError> {
        let policy = AddressPolicy {
            allow_private: config.allow_private_hosts,
            allowlist: Arc::new(
                config
                    .private_host_allowlist
                    .iter()
                    .map(|h| h.to_ascii_lowercase())
                    .collect(),
            ),
        };
        let resolver = CheckedResolver {
            policy: policy.clone(),
            static_hosts: Arc::new(
                config
                    .static_hosts
                    .iter()
                    .map(|(k, v)| (k.to_ascii_lowercase(), v.clone()))
                    .collect(),
            ),
        };
        let max_redirects = config.max_redirects;
        let redirect_policy = policy.clone();
        let redirect = Policy::custom(move |attempt: Attempt| {
            if attempt.previous().len() > max_redirects {
                return attempt.error(Refused(ImagingError::TooManyRedirects {
                    max: max_redirects,
                }));
            }
            match redirect_policy.check_url(attempt.url()) {
                Ok(()) => attempt.follow(),
                Err(ImagingError::UnsupportedScheme { .. }) => {
                    let url = attempt.url().to_string();
                    attempt.error(Refused(ImagingError::BadRedirect { url }))
                }
                Err(e) => attempt.error(Refused(e)),
            }
        });
        let client = reqwest::Client::builder()
            .no_proxy()
            .dns_resolver(Arc::new(resolver))
            .redirect(redirect)
            .connect_timeout(config.connect_timeout)
            .timeout(config.total_timeout)
            .user_agent(config.user_agent.clone())
            .build()
            .map_err(|e| ImagingError::Config {
                setting: "http client",
                reason: error_chain(&e),
            })?;
        Ok(Fetcher {
            client,
            policy,
            max_bytes: config.max_bytes,
            max_redirects,
            connect_timeout: config.connect_timeout,
            total_timeout: config.total_timeout,
            retries: config.fetch_retries,
            backoff: config.retry_backoff,
        })
    }

    /// Downloads `url`, retrying transient failures `fetch_retries` times with backoff.
    pub async fn fetch(&self, url: &str) -> Result<Fetched, ImagingError> {
        let (fetched, _unbounded) = self.fetch_within(url, &MemoryBudget::unlimited()).await?;
        Ok(fetched)
    }

    /// [`Fetcher::fetch`], holding the body's bytes as a [`Phase::Download`] reservation of
    /// `budget`, which the caller keeps as long as it keeps the bytes.
    ///
    /// Before each request it reserves the per-image limit (`max_bytes`): a download can never
    /// take more, and waiting for memory happens before the request, outside its timeout. Once the
    /// headers arrive the reservation shrinks to the `Content-Length`, or, when the length is not
    /// announced, to what arrived.
    pub async fn fetch_within(
        &self,
        url: &str,
        budget: &MemoryBudget,
    ) -> Result<(Fetched, Reservation), ImagingError> {
        let mut attempt = 0;
        loop {
            let reservation = budget.reserve(Phase::Download, self.max_bytes).await?;
            match self.fetch_once_within(url, reservation).await {
                Err(e) if e.is_transient() && attempt < self.retries => {
                    let delay = self.backoff * 2u32.saturating_pow(attempt);
                    tracing::debug!(%url, error = %e, ?delay, "transient fetch error, retrying");
                    attempt += 1;
                    tokio::time::sleep(delay).await;
                }
                other => return other,
            }
        }
    }

    /// Downloads `url` once, without retries.
    pub async fn fetch_once(&self, url: &str) -> Result<Fetched, ImagingError> {
        let (fetched, _) = self.fetch_once_within(url, Reservation::none()).await?;
        Ok(fetched)
    }

    /// Downloads `url` once into memory `reservation` holds (at least `max_bytes`).
    async fn fetch_once_within(
        &self,
        url: &str,
        mut reservation: Reservation,
    ) -> Result<(Fetched, Reservation), ImagingError> {
        let parsed = parse_url(url)?;
        self.policy.check_url(&parsed)?;

        let response = self
            .client
            .get(parsed)
            .header(reqwest::header::ACCEPT, "image/*,*/*;q=0.5")
            .send()
            .await
            .map_err(|e| self.classify(e))?;

        let status = response.status();
        if !status.is_success() {
            return Err(ImagingError::Http {
                status: status.as_u16(),
            });
        }
        if let Some(len) = response.content_length() {
            if len > self.max_bytes {
                return Err(ImagingError::TooLarge {
                    size: Some(len),
                    limit: self.max_bytes,
                });
            }
            reservation.shrink_to(len);
        }
        let final_url = response.url().clone();
        let content_type = response
            .headers()
            .get(reqwest::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);

        // Sized once: growing by doubling would hold the old and the new buffer at once. An
        // unknown length gets the whole limit, of which only the pages written become resident.
        let capacity = response.content_length().unwrap_or(self.max_bytes);
        let mut body = BytesMut::with_capacity(capacity as usize);
        let mut response = response;
        while let Some(chunk) = response.chunk().await.map_err(|e| self.classify(e))? {
            if body.len() as u64 + chunk.len() as u64 > self.max_bytes {
                return Err(ImagingError::TooLarge {
                    size: None,
                    limit: self.max_bytes,
                });
            }
            body.extend_from_slice(&chunk);
        }
        reservation.shrink_to(body.len() as u64);
        let fetched = Fetched {
            bytes: body.freeze(),
            final_url,
            content_type,
        };
        Ok((fetched, reservation))
    }

    /// Maps a reqwest error to an [`ImagingError`], recovering our own refusals from its chain.
    fn classify(&self, err: reqwest::Error) -> ImagingError {
        let mut source: Option<&(dyn StdError + 'static)> = err.source();
        while let Some(s) = source {
            if let Some(Refused(inner)) = s.downcast_ref::<Refused>() {
                return clone_refusal(inner);
            }
            source = s.source();
        }
        if err.is_redirect() {
            return ImagingError::TooManyRedirects {
                max: self.max_redirects,
            };
        }
        if err.is_timeout() {
            let phase = if err.is_connect() { "connect" } else { "total" };
            let after = if err.is_connect() {
                self.connect_timeout
            } else {
                self.total_timeout
            };
            return ImagingError::Timeout { phase, after };
        }
        let chain = error_chain(&err);
        let lower = chain.to_ascii_lowercase();
        // Certificate problems do not fix themselves; everything else at the transport level
        // (refused, reset, closed early, truncated body) may.
        let transient = !(lower.contains("certificate") || lower.contains("invalid dns name"));
        ImagingError::Network {
            reason: chain,
            transient,
        }
    }
}

fn parse_url(url: &str) -> Result<Url, ImagingError> {
    let parsed = Url::parse(url.trim()).map_err(|e| ImagingError::InvalidUrl {
        reason: format!("`{}`: {e}", truncate(url, 200)),
    })?;
    Ok(parsed)
}

fn truncate(s: &str, max: usize) -> &str {
    match s.char_indices().nth(max) {
        Some((i, _)) => &s[..i],
        None => s,
    }
}

/// Re-creates a refusal carried through reqwest (the original is borrowed inside its error).
fn clone_refusal(e: &ImagingError) -> ImagingError {
    match e {
        ImagingError::BlockedAddress { host, addr, kind } => ImagingError::BlockedAddress {
            host: host.clone(),
            addr: *addr,
            kind,
        },
        ImagingError::TooManyRedirects { max } => ImagingError::TooManyRedirects { max: *max },
        ImagingError::BadRedirect { url } => ImagingError::BadRedirect { url: url.clone() },
        ImagingError::UnsupportedScheme { scheme } => ImagingError::UnsupportedScheme {
            scheme: scheme.clone(),
        },
        ImagingError::InvalidUrl { reason } => ImagingError::InvalidUrl {
            reason: reason.clone(),
        },
        ImagingError::Dns { host, reason } => ImagingError::Dns {
            host: host.clone(),
            reason: reason.clone(),
        },
        other => ImagingError::Network {
            reason: other.to_string(),
            transient: other.is_transient(),
        },
    }
}

/// "a: b: c" from an error and its sources, without repeats.
fn error_chain(err: &dyn StdError) -> String {
    let mut parts: Vec<String> = vec![err.to_string()];
    let mut source = err.source();
    while let Some(s) = source {
        let text = s.to_string();
        if !parts.iter().any(|p| p.contains(&text)) {
            parts.push(text);
        }
        source = s.source();
    }
    parts.join(": ")
}
