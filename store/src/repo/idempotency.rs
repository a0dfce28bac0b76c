//! Idempotent creates: the `idempotency_keys` table, shared by users and products.
//!
//! One call is one transaction: forget the key if it has expired, look it up, and when it is not
//! there insert the row (with the inserts that go with it, such as the outbox row) and the key
//! with a snapshot of the row. Two calls racing with the same new key both insert a row, but
//! only one can insert the key (primary key `(scope, key)`; PostgreSQL makes the second wait for
//! the first to commit): the loser rolls its transaction back, so its row disappears, and looks
//! again, finding the winner's key. A loser may also fail earlier, on a unique column of the row
//! itself (a user's mobile, which the winner has just taken): an insert that fails looks for the
//! key too, and replays it when it is there.

use std::sync::atomic::Ordering;
use std::time::Duration;

use chrono::{DateTime, Utc};
use mq_core::domain::{Created, IdempotencyKey, Product, RepoError, User};
use sea_orm::sea_query::{Expr, Query};
use sea_orm::{
    ColumnTrait, ConnectionTrait, DatabaseTransaction, EntityTrait, Order, QueryFilter, Set,
    TransactionTrait, TryInsertResult,
};
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::entities::idempotency_key::{self, Column};
use crate::error::repo_err;
use crate::store::{now, Insert, Store};

/// Longest time a key is remembered (longer TTLs are cut to this). Keeps `expires_at` within
/// four-digit years, which SQLite compares as text.
const MAX_TTL: Duration = Duration::from_secs(100 * 366 * 24 * 3600);
/// How often, at most, a store purges expired keys.
const PURGE_INTERVAL_SECS: i64 = 60;
/// Most keys one purge deletes.
const PURGE_BATCH: u64 = 1000;
/// Attempts before giving up when concurrent calls with the same key keep winning it.
const MAX_ATTEMPTS: usize = 3;

/// `write` as the closure [`Store::create_idempotent`] takes, for a caller that also runs it
/// without a key: gives the closure its higher-ranked signature.
pub(crate) fn as_write<T, F>(write: F) -> F
where
    F: Fn(&DatabaseTransaction) -> Insert<'_, T> + Send + Sync,
{
    write
}

/// A row that an idempotency key keeps a snapshot of.
pub(crate) trait Snapshot: Serialize + DeserializeOwned + Send {
    /// The key's scope: keys of different scopes never meet.
    const SCOPE: &'static str;

    /// Undoes what the JSON round trip changes.
    fn restored(self) -> Self {
        self
    }
}

impl Snapshot for User {
    const SCOPE: &'static str = "users";
}

impl Snapshot for Product {
    const SCOPE: &'static str = "products";

    /// The price is a JSON number, so `0.10` reads back as `0.1`; the store returns prices with
    /// two decimals.
    fn restored(mut self) -> Self {
        self.product_price.rescale(2);
        self
    }
}

/// What one attempt came to.
enum Attempt<T> {
    /// This call inserted the row and the key.
    New(T),
    /// The key was there: the stored row, or the error for another fingerprint.
    Found(Result<Created<T>, RepoError>),
    /// A concurrent call stored the key first; this call's inserts were rolled back.
    Lost,
    /// Inserting the row failed; rolled back.
    Failed(RepoError),
}

impl Store {
    /// `insert` at most once per unexpired `key` (see `UserRepo::create_user_idempotent`).
    pub(crate) async fn create_idempotent<T, F>(
        &self,
        key: &IdempotencyKey,
        insert: F,
    ) -> Result<Created<T>, RepoError>
    where
        T: Snapshot,
        F: Fn(&DatabaseTransaction) -> Insert<'_, T> + Send + Sync,
    {
        let _turn = self.write_turn().await?;
        for _ in 0..MAX_ATTEMPTS {
            match self.attempt(key, &insert).await? {
                Attempt::New(row) => {
                    self.purge_expired_keys().await;
                    return Ok(Created::New(row));
                }
                Attempt::Found(result) => return result,
                // The winner's key is committed now: the next attempt finds it.
                Attempt::Lost => {}
                // Perhaps because a concurrent call with this key inserted the same row first
                // (unique mobile): then its key is there now. Otherwise the error stands.
                Attempt::Failed(e) => {
                    return match lookup::<T>(&self.db, key, now()).await {
                        Ok(Some(stored)) => replay(stored, key),
                        _ => Err(e),
                    };
                }
            }
        }
        Err(RepoError::Unavailable(format!(
            "idempotency key `{}`: concurrent requests with this key kept winning it",
            key.key
        )))
    }

    /// One transaction: committed when it created the row, rolled back otherwise.
    async fn attempt<T, F>(&self, key: &IdempotencyKey, insert: &F) -> Result<Attempt<T>, RepoError>
    where
        T: Snapshot,
        F: Fn(&DatabaseTransaction) -> Insert<'_, T> + Send + Sync,
    {
        let txn = self.db.begin().await.map_err(repo_err)?;
        match attempt_in(&txn, key, insert).await {
            Ok(Attempt::New(row)) => {
                txn.commit().await.map_err(repo_err)?;
                Ok(Attempt::New(row))
            }
            Ok(other) => {
                txn.rollback().await.map_err(repo_err)?;
                Ok(other)
            }
            Err(e) => {
                // Explicitly, so that on SQLite the write lock is gone before the turn is.
                let _ = txn.rollback().await;
                Err(e)
            }
        }
    }

    /// Deletes expired keys: at most [`PURGE_BATCH`] of them, at most once per
    /// [`PURGE_INTERVAL_SECS`] per store, after an idempotent create committed, outside its
    /// transaction and best effort.
    ///
    /// Expired keys are harmless (a lookup deletes the one it meets), so purging only bounds the
    /// table. Throttled and bounded, it adds nothing to most calls, keeps one call from paying for
    /// a large backlog, and seldom has two processes' purges contend for the same rows; a full
    /// batch makes the next create purge again, so the purge keeps up with any rate of creates.
    /// A failure is logged and left to the next purge: the create has committed.
    async fn purge_expired_keys(&self) {
        let now = now();
        let due = self.next_key_purge.load(Ordering::Relaxed);
        let next = now.timestamp() + PURGE_INTERVAL_SECS;
        if now.timestamp() < due
            || self
                .next_key_purge
                .compare_exchange(due, next, Ordering::Relaxed, Ordering::Relaxed)
                .is_err()
        {
            return;
        }
        let oldest = Query::select()
            .columns([Column::Scope, Column::Key])
            .from(idempotency_key::Entity)
            .and_where(Expr::col(Column::ExpiresAt).lte(now))
            .order_by(Column::ExpiresAt, Order::Asc)
            .limit(PURGE_BATCH)
            .to_owned();
        let purged = idempotency_key::Entity::delete_many()
            .filter(
                Expr::tuple([
                    Expr::col(Column::Scope).into(),
                    Expr::col(Column::Key).into(),
                ])
                .in_subquery(oldest),
            )
            .exec(&self.db)
            .await;
        match purged {
            Ok(done) if done.rows_affected >= PURGE_BATCH => {
                self.next_key_purge.store(0, Ordering::Relaxed);
            }
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "purging expired idempotency keys failed"),
        }
    }
}

/// The statements of one attempt, in `txn`.
async fn attempt_in<T, F>(
    txn: &DatabaseTransaction,
    key: &IdempotencyKey,
    insert: &F,
) -> Result<Attempt<T>, RepoError>
where
    T: Snapshot,
    F: Fn(&DatabaseTransaction) -> Insert<'_, T> + Send + Sync,
{
    let now = now();
    // An expired key is forgotten. This write comes first so that on SQLite the transaction
    // holds the write lock before it reads: the lookup cannot go stale before the inserts.
    idempotency_key::Entity::delete_many()
        .filter(Column::Scope.eq(T::SCOPE))
        .filter(Column::Key.eq(&key.key))
        .filter(Column::ExpiresAt.lte(now))
        .exec(txn)
        .await
        .map_err(repo_err)?;
    if let Some(stored) = lookup::<T>(txn, key, now).await? {
        return Ok(Attempt::Found(replay(stored, key)));
    }

    let row = match insert(txn).await {
        Ok(row) => row,
        Err(e) => return Ok(Attempt::Failed(e)),
    };
    let response = serde_json::to_string(&row).map_err(|e| RepoError::Other(e.to_string()))?;
    let key_row = idempotency_key::ActiveModel {
        scope: Set(T::SCOPE.to_owned()),
        key: Set(key.key.clone()),
        fingerprint: Set(key.fingerprint.clone()),
        response: Set(response),
        created_at: Set(now),
        expires_at: Set(expires_at(now, key.ttl)),
    };
    let inserted = idempotency_key::Entity::insert(key_row)
        .on_conflict_do_nothing()
        .exec_without_returning(txn)
        .await
        .map_err(repo_err)?;
    Ok(match inserted {
        TryInsertResult::Inserted(1) => Attempt::New(row),
        _ => Attempt::Lost,
    })
}

/// The key `key` of `T`'s scope, if it is stored and unexpired at `now`.
async fn lookup<T: Snapshot>(
    db: &impl ConnectionTrait,
    key: &IdempotencyKey,
    now: DateTime<Utc>,
) -> Result<Option<idempotency_key::Model>, RepoError> {
    idempotency_key::Entity::find_by_id((T::SCOPE.to_owned(), key.key.clone()))
        .filter(Column::ExpiresAt.gt(now))
        .one(db)
        .await
        .map_err(repo_err)
}

/// The stored row for the same fingerprint, [`RepoError::IdempotencyKeyReused`] for another.
fn replay<T: Snapshot>(
    stored: idempotency_key::Model,
    key: &IdempotencyKey,
) -> Result<Created<T>, RepoError> {
    if stored.fingerprint != key.fingerprint {
        return Err(RepoError::IdempotencyKeyReused(key.key.clone()));
    }
    let row: T = serde_json::from_str(&stored.response).map_err(|e| {
        RepoError::Other(format!(
            "idempotency key `{}`: unreadable stored response: {e}",
            key.key
        ))
    })?;
    Ok(Created::Replayed(row.restored()))
}

/// `now + ttl`, to the microsecond (what both databases keep), with `ttl` cut to [`MAX_TTL`].
fn expires_at(now: DateTime<Utc>, ttl: Duration) -> DateTime<Utc> {
    let micros = i64::try_from(ttl.min(MAX_TTL).as_micros()).unwrap_or(i64::MAX);
    now + chrono::Duration::microseconds(micros)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expiry_is_cut_to_microseconds_and_the_longest_ttl() {
        let now = DateTime::from_timestamp_micros(1_800_000_000_000_001).unwrap();
        assert_eq!(expires_at(now, Duration::ZERO), now);
        assert_eq!(
            expires_at(now, Duration::from_nanos(2_999)),
            now + chrono::Duration::microseconds(2)
        );
        assert_eq!(
            expires_at(now, Duration::MAX),
            expires_at(now, MAX_TTL),
            "no overflow"
        );
        assert!(
            expires_at(now, Duration::MAX)
                .format("%Y")
                .to_string()
                .len()
                == 4
        );
    }
}
