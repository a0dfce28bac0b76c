use std::time::Duration;

/// A client's `Idempotency-Key`, attached to a create call so that a retried request creates
/// nothing new.
///
/// The repository stores the key, the fingerprint and the created row in the same transaction
/// as the row itself, so a crash can never leave a created row without its key (a retry would
/// then create a duplicate) or a key without its row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdempotencyKey {
    /// The header value as the client sent it.
    pub key: String,
    /// A digest of what the request asked for (route and canonical body). The same key with a
    /// different fingerprint is rejected with [`RepoError::IdempotencyKeyReused`].
    ///
    /// [`RepoError::IdempotencyKeyReused`]: super::RepoError::IdempotencyKeyReused
    pub fingerprint: String,
    /// How long the key is remembered. Once it has expired the key may be used afresh.
    pub ttl: Duration,
}

/// The outcome of an idempotent create.
#[derive(Debug, Clone, PartialEq)]
pub enum Created<T> {
    /// The row was created by this call.
    New(T),
    /// An earlier call with the same key and fingerprint created the row; this is the row as that
    /// call returned it (not as it is now), so the client sees the original response again.
    Replayed(T),
}

impl<T> Created<T> {
    /// The row, whichever call created it.
    pub fn into_inner(self) -> T {
        match self {
            Created::New(row) | Created::Replayed(row) => row,
        }
    }

    /// `true` when an earlier call created the row.
    pub fn is_replay(&self) -> bool {
        matches!(self, Created::Replayed(_))
    }

    /// The same outcome with the row turned into something else (e.g. its JSON view).
    pub fn map<U>(self, f: impl FnOnce(T) -> U) -> Created<U> {
        match self {
            Created::New(row) => Created::New(f(row)),
            Created::Replayed(row) => Created::Replayed(f(row)),
        }
    }
}
