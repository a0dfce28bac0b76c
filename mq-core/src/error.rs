//! The one error type of the messaging layer.

use std::fmt;

/// A boxed error from a backend client library (lapin, rdkafka, ...).
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// Result alias used throughout the messaging layer.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Whether retrying the same operation later can succeed.
///
/// The worker runtime retries [`Transient`](Retry::Transient) failures with backoff and
/// dead-letters [`Permanent`](Retry::Permanent) ones at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Retry {
    /// The broker, a network link or a dependency is briefly unavailable: try again.
    Transient,
    /// The same input will fail the same way every time: do not retry.
    Permanent,
}

/// An error from a publisher, subscriber, delivery or message handler.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The broker could not be reached or refused the operation for now. Retry later.
    #[error("broker unavailable: {message}")]
    Unavailable {
        /// What failed, for humans.
        message: String,
        /// The client library's error, when there is one.
        #[source]
        source: Option<BoxError>,
    },

    /// The operation did not complete in time. Retry later.
    #[error("timed out after {after:?} while {operation}")]
    Timeout {
        /// What was being done.
        operation: String,
        /// How long we waited.
        after: std::time::Duration,
    },

    /// The publisher or subscriber was closed; create a new one.
    #[error("{0} is closed")]
    Closed(&'static str),

    /// A message payload could not be encoded or decoded. Retrying cannot help.
    #[error("invalid payload: {0}")]
    Payload(#[source] serde_json::Error),

    /// The broker rejected the message itself (unroutable, too large, ...). Retrying cannot help.
    #[error("message rejected: {0}")]
    Rejected(String),

    /// A backend error, classified by the backend.
    #[error("{message}")]
    Backend {
        /// What failed, for humans.
        message: String,
        /// Whether a retry can succeed.
        retry: Retry,
        /// The client library's error.
        #[source]
        source: Option<BoxError>,
    },

    /// A message handler failed (see [`crate::worker`]).
    #[error("{message}")]
    Handler {
        /// Why the handler failed; recorded in the dead-letter reason header.
        message: String,
        /// Whether a retry can succeed.
        retry: Retry,
    },
}

impl Error {
    /// A transient backend failure with its cause.
    pub fn unavailable(message: impl Into<String>, source: impl Into<BoxError>) -> Self {
        Error::Unavailable {
            message: message.into(),
            source: Some(source.into()),
        }
    }

    /// A backend failure with an explicit classification.
    pub fn backend(message: impl fmt::Display, retry: Retry, source: impl Into<BoxError>) -> Self {
        Error::Backend {
            message: message.to_string(),
            retry,
            source: Some(source.into()),
        }
    }

    /// A handler failure that a later attempt may fix (a timeout, a 5xx, a database blip).
    pub fn transient(message: impl fmt::Display) -> Self {
        Error::Handler {
            message: message.to_string(),
            retry: Retry::Transient,
        }
    }

    /// A handler failure that no retry can fix (an undecodable payload, a missing row).
    pub fn permanent(message: impl fmt::Display) -> Self {
        Error::Handler {
            message: message.to_string(),
            retry: Retry::Permanent,
        }
    }

    /// How the failure should be treated by retry logic.
    pub fn retry(&self) -> Retry {
        match self {
            Error::Unavailable { .. } | Error::Timeout { .. } => Retry::Transient,
            Error::Closed(_) | Error::Payload(_) | Error::Rejected(_) => Retry::Permanent,
            Error::Backend { retry, .. } | Error::Handler { retry, .. } => *retry,
        }
    }

    /// `true` when retrying later can succeed.
    pub fn is_transient(&self) -> bool {
        self.retry() == Retry::Transient
    }
}

impl From<serde_json::Error> for Error {
    fn from(error: serde_json::Error) -> Self {
        Error::Payload(error)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classification() {
        assert!(Error::transient("x").is_transient());
        assert!(!Error::permanent("x").is_transient());
        assert!(Error::unavailable("down", std::io::Error::other("refused")).is_transient());
        assert!(!Error::Closed("publisher").is_transient());
        let bad_json = serde_json::from_str::<u8>("nope").unwrap_err();
        assert_eq!(Error::from(bad_json).retry(), Retry::Permanent);
    }
}
