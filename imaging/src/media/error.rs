//! [`MediaError`]: what can go wrong with the media store, classified transient or permanent.

/// Why a media-store operation failed.
///
/// [`is_transient`](MediaError::is_transient) tells whether trying again later may succeed: a
/// store that is down, slow, throttling or answering 5xx is transient; a bad `MEDIA_URL`, a
/// missing bucket or refused credentials are permanent and need an operator.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum MediaError {
    /// The media URL is malformed, has an unknown scheme, or needs a cargo feature that is not
    /// compiled in.
    #[error("`{url}`: {reason}")]
    InvalidUrl {
        /// The URL as given.
        url: String,
        /// What is wrong and how to fix it.
        reason: String,
    },

    /// No object under this key.
    #[error("no media object `{key}`")]
    NotFound {
        /// The key.
        key: String,
    },

    /// The store answered with an error, or could not be reached.
    #[error("the media store {store} failed on `{key}`: {source}{}", hint(*.transient))]
    Store {
        /// The key (or prefix) concerned.
        key: String,
        /// Which store, e.g. `s3://images/media` (never credentials).
        store: String,
        /// The store client's error (boxed: it is large, and errors travel in every `Result`).
        #[source]
        source: Box<object_store::Error>,
        /// Whether a retry may help.
        transient: bool,
    },
}

fn hint(transient: bool) -> &'static str {
    if transient {
        "; try again later"
    } else {
        "; check MEDIA_URL, the bucket and its credentials"
    }
}

impl MediaError {
    /// Wraps an [`object_store::Error`] of a read of `key` on `store`, classifying it: a
    /// missing object is [`MediaError::NotFound`].
    pub(crate) fn from_read(store: &str, key: &str, source: object_store::Error) -> MediaError {
        if matches!(source, object_store::Error::NotFound { .. }) {
            return MediaError::NotFound { key: key.into() };
        }
        MediaError::from_store(store, key, source)
    }

    /// Wraps an [`object_store::Error`] of a write or listing on `store`, classifying it. A
    /// "not found" here means the bucket is missing: permanent, but not a missing object.
    pub(crate) fn from_store(store: &str, key: &str, source: object_store::Error) -> MediaError {
        MediaError::Store {
            key: key.into(),
            store: store.into(),
            transient: is_transient(&source),
            source: Box::new(source),
        }
    }

    /// True when retrying later may succeed (the store is down, slow, throttling or failing
    /// with 5xx); false for missing objects, bad settings, missing buckets and refused access.
    pub fn is_transient(&self) -> bool {
        match self {
            MediaError::Store { transient, .. } => *transient,
            MediaError::InvalidUrl { .. } | MediaError::NotFound { .. } => false,
        }
    }
}

/// object_store has already retried what its client considers retryable (5xx, 429, timeouts,
/// refused connections) by the time it returns `Generic`; such an error is still worth a later
/// attempt of the whole message. The named variants are answers that no retry changes.
fn is_transient(error: &object_store::Error) -> bool {
    use object_store::Error as E;
    match error {
        E::Generic { source, .. } => !answer_is_permanent(source.as_ref()),
        E::JoinError { .. } => true,
        _ => false,
    }
}

/// A `Generic` error whose HTTP answer says no retry will help: a 4xx other than 408 and 429
/// (S3's `InvalidBucketName`, a malformed authorization header). object_store keeps its
/// `RetryError` private, so the status is read from its message
/// (`Server returned non-2xx status code: 400 Bad Request: ...`).
fn answer_is_permanent(source: &(dyn std::error::Error + 'static)) -> bool {
    let text = source.to_string();
    let status = text
        .split_once("status code: ")
        .and_then(|(_, rest)| rest.get(..3))
        .and_then(|code| code.parse::<u16>().ok());
    matches!(status, Some(400..=499) if !matches!(status, Some(408 | 429)))
        || text.contains("NoSuchBucket")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outages_are_transient_and_refusals_are_not() {
        let generic = |text: &str| object_store::Error::Generic {
            store: "S3",
            source: text.to_string().into(),
        };
        let outage = MediaError::from_store("s3://b", "k", generic("error sending request"));
        let throttled = MediaError::from_store(
            "s3://b",
            "k",
            generic("Server returned non-2xx status code: 429 Too Many Requests: slow down"),
        );
        assert!(throttled.is_transient(), "{throttled}");
        let bad_request = MediaError::from_store(
            "s3://b",
            "k",
            generic("Server returned non-2xx status code: 400 Bad Request: InvalidBucketName"),
        );
        assert!(!bad_request.is_transient(), "{bad_request}");
        assert!(outage.is_transient(), "{outage}");
        assert!(outage.to_string().contains("try again later"));
        let bucket = MediaError::from_store("s3://b", "k", generic("NoSuchBucket"));
        assert!(!bucket.is_transient(), "{bucket}");
        assert!(bucket.to_string().contains("MEDIA_URL"));
        let denied = MediaError::from_store(
            "s3://b",
            "k",
            object_store::Error::PermissionDenied {
                path: "k".into(),
                source: "denied".into(),
            },
        );
        assert!(!denied.is_transient());
        let missing = MediaError::from_read(
            "s3://b",
            "k",
            object_store::Error::NotFound {
                path: "k".into(),
                source: "gone".into(),
            },
        );
        assert!(matches!(missing, MediaError::NotFound { .. }));
    }
}
