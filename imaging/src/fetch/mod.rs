//! Safe HTTP(S) download of an image: scheme and address checks, redirect and size limits, a
//! deadline and a minimum transfer rate, transient/permanent error classification.
//!
//! The address check runs at connect time on the resolved addresses (a custom reqwest DNS
//! resolver drops every non-public address), so it also covers redirects and DNS rebinding.
//! reqwest does not call the resolver for IP-literal hosts, so those are checked before the
//! request and on every redirect by the redirect policy. Proxies from the environment are
//! ignored, since a proxy would resolve and connect on our behalf.
//!
//! A [`Fetcher`] makes one attempt per call and never retries: the worker's message retries are
//! the only retry loop, and [`Imaging`](crate::Imaging) charges each attempt to the image's
//! fetch budget.

mod addresses;
pub(crate) mod allowance;
mod pace;

use std::error::Error as StdError;
use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use reqwest::redirect::{Attempt, Policy};
use reqwest::Url;

use crate::budget::{MemoryBudget, Phase, Reservation};
use crate::config::ImagingConfig;
use crate::error::ImagingError;
use addresses::{AddressPolicy, CheckedResolver, Refused};
use pace::{Limit, MinRate, TransferClock};

/// A downloaded body.
#[derive(Debug, Clone)]
pub struct Fetched {
    /// The body, at most `max_bytes` long.
    pub bytes: bytes::Bytes,
    /// The URL the body came from, after redirects.
    pub final_url: Url,
    /// The `Content-Type` the server sent (informational only: the format is sniffed).
    pub content_type: Option<String>,
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
    min_rate: MinRate,
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
        // No request timeout here: each attempt keeps its own clock (`pace`), which knows the
        // minimum rate and the image's fetch budget, and does not count waits for memory.
        let client = reqwest::Client::builder()
            .no_proxy()
            .dns_resolver(Arc::new(resolver))
            .redirect(redirect)
            .connect_timeout(config.connect_timeout)
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
            min_rate: MinRate {
                bytes_per_second: config.min_transfer_rate,
                grace: config.transfer_grace,
            },
        })
    }

    /// Downloads `url` once, within `total_timeout` and the minimum transfer rate.
    pub async fn fetch(&self, url: &str) -> Result<Fetched, ImagingError> {
        let mut time_left = self.total_timeout;
        let (fetched, _unbounded) = self
            .fetch_within(url, &MemoryBudget::unlimited(), &mut time_left)
            .await?;
        Ok(fetched)
    }

    /// Downloads `url` once, holding the body's bytes as a [`Phase::Download`] reservation of
    /// `memory`, which the caller keeps as long as it keeps the bytes.
    ///
    /// The attempt ends with an error when it takes longer than `total_timeout` or `time_left`,
    /// or when, after the grace period, it averages less than the minimum transfer rate (so the
    /// response headers must arrive within the grace period). `time_left` is reduced by the time
    /// the attempt took; waiting for memory is not counted. An attempt stopped by `time_left`
    /// fails with [`ImagingError::Timeout`] in phase `"fetch budget"`.
    ///
    /// Memory is reserved once the headers arrive: the `Content-Length`, or the per-image limit
    /// (`max_bytes`) when the length is not announced, shrunk to what arrived. A server that
    /// never answers holds no memory while it is waited for.
    pub async fn fetch_within(
        &self,
        url: &str,
        memory: &MemoryBudget,
        time_left: &mut Duration,
    ) -> Result<(Fetched, Reservation), ImagingError> {
        let mut clock = TransferClock::start(
            Limit::shorter(self.total_timeout, *time_left),
            self.min_rate,
        );
        let fetched = self.download(url, memory, &mut clock).await;
        *time_left = time_left.saturating_sub(clock.elapsed());
        fetched
    }

    async fn download(
        &self,
        url: &str,
        memory: &MemoryBudget,
        clock: &mut TransferClock,
    ) -> Result<(Fetched, Reservation), ImagingError> {
        let parsed = parse_url(url)?;
        self.policy.check_url(&parsed)?;

        let request = self
            .client
            .get(parsed)
            .header(reqwest::header::ACCEPT, "image/*,*/*;q=0.5")
            .send();
        let mut response = clock
            .keep_pace(request)
            .await?
            .map_err(|e| self.classify(e))?;
        clock.answered();

        let status = response.status();
        if !status.is_success() {
            return Err(ImagingError::Http {
                status: status.as_u16(),
            });
        }
        let announced = response.content_length();
        if let Some(len) = announced {
            if len > self.max_bytes {
                return Err(ImagingError::TooLarge {
                    size: Some(len),
                    limit: self.max_bytes,
                });
            }
        }
        let capacity = announced.unwrap_or(self.max_bytes);
        let mut reservation = clock
            .while_paused(memory.reserve(Phase::Download, capacity))
            .await?;
        let final_url = response.url().clone();
        let content_type = response
            .headers()
            .get(reqwest::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);

        // Sized once: growing by doubling would hold the old and the new buffer at once. An
        // unknown length gets the whole limit, of which only the pages written become resident.
        let mut body = BytesMut::with_capacity(capacity as usize);
        while let Some(chunk) = clock
            .keep_pace(response.chunk())
            .await?
            .map_err(|e| self.classify(e))?
        {
            if body.len() as u64 + chunk.len() as u64 > self.max_bytes {
                return Err(ImagingError::TooLarge {
                    size: None,
                    limit: self.max_bytes,
                });
            }
            clock.received(chunk.len());
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
        if let Some(refusal) = Refused::find(&err) {
            return refusal;
        }
        if err.is_redirect() {
            return ImagingError::TooManyRedirects {
                max: self.max_redirects,
            };
        }
        if err.is_timeout() {
            // The client's only timeout is the connect timeout; the attempt's own clock reports
            // the others.
            return ImagingError::Timeout {
                phase: "connect",
                after: self.connect_timeout,
            };
        }
        // Without reqwest's " for url (...)": the caller names the image, and the URL's query or
        // credentials (a presigned URL's signature) must not reach logs and traces through it.
        let chain = error_chain(&err.without_url());
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
