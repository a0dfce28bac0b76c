//! Which addresses a download may connect to: the checks on URLs, on DNS answers and on
//! redirects, and the error type that carries a refusal through reqwest.

use std::collections::HashMap;
use std::error::Error as StdError;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use reqwest::dns::{Addrs, Name, Resolve, Resolving};
use reqwest::Url;

use crate::address::non_public_reason;
use crate::error::ImagingError;

/// Which hosts may resolve to non-public addresses.
#[derive(Debug, Clone)]
pub(super) struct AddressPolicy {
    pub(super) allow_private: bool,
    pub(super) allowlist: Arc<Vec<String>>,
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
    pub(super) fn check_url(&self, url: &Url) -> Result<(), ImagingError> {
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

/// The error our resolver and redirect policy hand through reqwest, recovered by
/// [`Refused::find`].
#[derive(Debug)]
pub(super) struct Refused(pub(super) ImagingError);

impl std::fmt::Display for Refused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

impl StdError for Refused {}

impl Refused {
    /// Our refusal inside a reqwest error's source chain, re-created (reqwest owns the original).
    pub(super) fn find(error: &reqwest::Error) -> Option<ImagingError> {
        let mut source: Option<&(dyn StdError + 'static)> = error.source();
        while let Some(s) = source {
            if let Some(Refused(inner)) = s.downcast_ref::<Refused>() {
                return Some(clone_refusal(inner));
            }
            source = s.source();
        }
        None
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

/// DNS resolver that filters out non-public addresses (unless allowed) after resolution.
#[derive(Debug, Clone)]
pub(super) struct CheckedResolver {
    pub(super) policy: AddressPolicy,
    pub(super) static_hosts: Arc<HashMap<String, Vec<IpAddr>>>,
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
