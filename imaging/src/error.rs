//! [`ImagingError`]: every way an image can fail, classified transient or permanent.

use std::net::IpAddr;
use std::time::Duration;

/// Why processing one image failed.
///
/// [`is_transient`](ImagingError::is_transient) tells whether trying again later may succeed
/// (timeouts, 5xx answers, dropped connections, a full disk); everything else is permanent and
/// retrying the same URL is pointless. `Display` is a message meant for the person who supplied
/// the URL.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ImagingError {
    /// A setting of [`ImagingConfig`](crate::ImagingConfig) is invalid.
    #[error("invalid imaging setting `{setting}`: {reason}")]
    Config {
        /// Name of the setting.
        setting: &'static str,
        /// What is wrong with it.
        reason: String,
    },

    /// The URL does not parse or has no host.
    #[error("invalid image URL: {reason}; use an absolute http:// or https:// URL")]
    InvalidUrl {
        /// What is wrong.
        reason: String,
    },

    /// The scheme is not http or https.
    #[error(
        "unsupported URL scheme `{scheme}`: only http:// and https:// image URLs can be fetched"
    )]
    UnsupportedScheme {
        /// The refused scheme.
        scheme: String,
    },

    /// The host is, or resolves to, a loopback/private/link-local/... address.
    #[error(
        "refused to fetch from `{host}` ({}{kind} address); image URLs must point to a public \
         host (operators can allow internal hosts with ALLOW_PRIVATE_IMAGE_HOSTS)",
        match addr { Some(a) => format!("{a}: "), None => String::new() }
    )]
    BlockedAddress {
        /// The host as named in the URL (or redirect).
        host: String,
        /// The refused address, when known.
        addr: Option<IpAddr>,
        /// What kind of address it is ("loopback", "private (RFC 1918)", ...).
        kind: &'static str,
    },

    /// More redirects than allowed.
    #[error("too many redirects (more than {max}); link directly to the image")]
    TooManyRedirects {
        /// The configured maximum.
        max: usize,
    },

    /// A redirect went to something other than http/https.
    #[error("redirected to an unsupported URL `{url}`; link directly to an http(s) image")]
    BadRedirect {
        /// Where the redirect pointed.
        url: String,
    },

    /// The host name does not resolve (or DNS failed).
    #[error("could not resolve host `{host}`: {reason}; check the URL's host name")]
    Dns {
        /// The host.
        host: String,
        /// Resolver message.
        reason: String,
    },

    /// Connect or total timeout, or the attempt ran out of the image's fetch budget.
    #[error("{}; try again later", timeout_message(phase, *after))]
    Timeout {
        /// "connect", "total" or "fetch budget".
        phase: &'static str,
        /// The configured limit (for "fetch budget": what was left of it).
        after: Duration,
    },

    /// The server accepted the connection but sent no response headers within the grace period.
    #[error(
        "the image server did not start answering within {after:.1?} (IMAGE_FETCH_GRACE); try \
         again later or host the image elsewhere"
    )]
    NoAnswer {
        /// The grace period.
        after: Duration,
    },

    /// After the grace period the download averaged less than the minimum transfer rate.
    #[error(
        "the image server is too slow: {received} bytes in {elapsed:.1?}, below the minimum of \
         {min_rate} bytes/s (IMAGE_FETCH_MIN_RATE); try again later or host the image elsewhere"
    )]
    TooSlow {
        /// Body bytes received.
        received: u64,
        /// How long the attempt ran.
        elapsed: Duration,
        /// The configured minimum, in bytes per second.
        min_rate: u64,
    },

    /// The image's download attempts used up its whole fetch budget.
    #[error(
        "gave up downloading the image after {attempts} attempt{} within its fetch budget of \
         {budget:?} (IMAGE_FETCH_BUDGET): {reason}",
        if *attempts == 1 { "" } else { "s" }
    )]
    FetchBudgetSpent {
        /// The configured budget.
        budget: Duration,
        /// Attempts made.
        attempts: u32,
        /// Why they failed (the last one's error, without advice to try again).
        reason: String,
    },

    /// Connection refused/reset/closed early, TLS failure...
    #[error("could not download the image ({reason}); try again later")]
    Network {
        /// Transport error chain.
        reason: String,
        /// Whether a retry may help (false for e.g. TLS certificate errors).
        transient: bool,
    },

    /// The server answered with a non-success status.
    #[error("the image server answered HTTP {status}{}", status_hint(*status))]
    Http {
        /// HTTP status code.
        status: u16,
    },

    /// The body is larger than `max_bytes`.
    #[error(
        "the image is too large to download ({}; the limit is {limit} bytes); use a smaller file",
        match size { Some(s) => format!("{s} bytes"), None => "over the limit while downloading".to_string() }
    )]
    TooLarge {
        /// Size announced by `Content-Length`, if any.
        size: Option<u64>,
        /// The configured limit.
        limit: u64,
    },

    /// The bytes are not a supported image format (sniffed from the content, not the URL).
    #[error(
        "the URL does not point to a supported image ({detail}); use a JPEG, PNG, WebP or GIF"
    )]
    NotAnImage {
        /// What was seen instead.
        detail: String,
    },

    /// The image needs more memory than the whole share of the worker's memory budget for one
    /// phase ([`MemoryBudget`](crate::budget::MemoryBudget)), so it could never be processed.
    #[error(
        "the image needs {needed} bytes of memory to {phase}, more than the {budget} bytes the \
         memory budget allows for that (half of WORKER_MEMORY_BUDGET); use a smaller image"
    )]
    OverBudget {
        /// `download` or `decode`.
        phase: &'static str,
        /// Bytes the image needs.
        needed: u64,
        /// The phase's share of the budget.
        budget: u64,
    },

    /// Width/height/pixel count over the limits (read from the header, before decoding).
    #[error(
        "the image is too large ({width}×{height} pixels; at most {max_side} pixels a side and \
         {max_pixels} pixels in total); use a smaller image"
    )]
    DimensionsTooLarge {
        /// Width from the header.
        width: u32,
        /// Height from the header.
        height: u32,
        /// Configured side limit.
        max_side: u32,
        /// Configured pixel limit.
        max_pixels: u64,
    },

    /// The image data is truncated or corrupt.
    #[error("the image file is damaged or truncated ({detail}); upload the file again")]
    Decode {
        /// Decoder message.
        detail: String,
    },

    /// Encoding failed (a bug or an exotic input, not the user's fault).
    #[error("could not encode the compressed image: {detail}")]
    Encode {
        /// Encoder message.
        detail: String,
    },

    /// Writing to the media store failed.
    #[error(transparent)]
    Storage(#[from] crate::media::MediaError),

    /// A background job was cancelled or panicked.
    #[error("image processing was interrupted: {detail}; try again")]
    Interrupted {
        /// Join error.
        detail: String,
    },
}

fn timeout_message(phase: &str, after: Duration) -> String {
    match phase {
        "connect" => format!("could not connect to the image server within {after:?}"),
        "fetch budget" => format!(
            "the download did not finish within the {after:.1?} left of the image's fetch budget \
             (IMAGE_FETCH_BUDGET)"
        ),
        _ => format!("the download did not finish within {after:?}, the time one attempt may take"),
    }
}

fn status_hint(status: u16) -> &'static str {
    match status {
        404 | 410 => " (not found); check the image URL",
        401 | 403 => " (access denied); the image must be publicly readable",
        408 | 429 => " (busy); try again later",
        500..=599 => " (server error); try again later",
        300..=399 => " (a redirect without a usable Location); link directly to the image",
        _ => "; check the image URL",
    }
}

impl ImagingError {
    /// True when retrying later may succeed: timeouts, transfers below the minimum rate,
    /// 5xx/408/429 answers, DNS or connection failures, media-store outages, interrupted jobs.
    /// Everything else is permanent, a spent fetch budget included.
    pub fn is_transient(&self) -> bool {
        match self {
            ImagingError::Timeout { .. }
            | ImagingError::TooSlow { .. }
            | ImagingError::NoAnswer { .. }
            | ImagingError::Dns { .. }
            | ImagingError::Interrupted { .. } => true,
            ImagingError::Storage(error) => error.is_transient(),
            ImagingError::Network { transient, .. } => *transient,
            ImagingError::Http { status } => matches!(status, 408 | 429 | 500..=599),
            ImagingError::Config { .. }
            | ImagingError::InvalidUrl { .. }
            | ImagingError::UnsupportedScheme { .. }
            | ImagingError::BlockedAddress { .. }
            | ImagingError::TooManyRedirects { .. }
            | ImagingError::BadRedirect { .. }
            | ImagingError::TooLarge { .. }
            | ImagingError::FetchBudgetSpent { .. }
            | ImagingError::NotAnImage { .. }
            | ImagingError::DimensionsTooLarge { .. }
            | ImagingError::OverBudget { .. }
            | ImagingError::Decode { .. }
            | ImagingError::Encode { .. } => false,
        }
    }

    /// A short, stable name of the kind of failure, e.g. `http` or `too_large`: the `reason`
    /// label of the `image_failures_total` metric.
    pub fn kind(&self) -> &'static str {
        match self {
            ImagingError::Config { .. } => "config",
            ImagingError::InvalidUrl { .. } => "invalid_url",
            ImagingError::UnsupportedScheme { .. } => "unsupported_scheme",
            ImagingError::BlockedAddress { .. } => "blocked_address",
            ImagingError::TooManyRedirects { .. } => "too_many_redirects",
            ImagingError::BadRedirect { .. } => "bad_redirect",
            ImagingError::Dns { .. } => "dns",
            ImagingError::Timeout { .. } => "timeout",
            ImagingError::TooSlow { .. } => "too_slow",
            ImagingError::NoAnswer { .. } => "no_answer",
            ImagingError::FetchBudgetSpent { .. } => "fetch_budget",
            ImagingError::Network { .. } => "network",
            ImagingError::Http { .. } => "http",
            ImagingError::TooLarge { .. } => "too_large",
            ImagingError::NotAnImage { .. } => "not_an_image",
            ImagingError::DimensionsTooLarge { .. } => "dimensions_too_large",
            ImagingError::OverBudget { .. } => "over_budget",
            ImagingError::Decode { .. } => "decode",
            ImagingError::Encode { .. } => "encode",
            ImagingError::Storage(_) => "storage",
            ImagingError::Interrupted { .. } => "interrupted",
        }
    }

    /// The message without its closing advice to try again later (for a reason that reports a
    /// transient error inside a permanent one).
    pub(crate) fn without_advice(&self) -> String {
        let message = self.to_string();
        match message.find("; try again later") {
            Some(end) => message[..end].to_string(),
            None => message,
        }
    }

    /// True when the error is permanent (`!is_transient()`).
    pub fn is_permanent(&self) -> bool {
        !self.is_transient()
    }
}
