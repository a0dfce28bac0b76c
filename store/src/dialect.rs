//! Everything that differs between PostgreSQL and SQLite, in one place.
//!
//! - the price column: `numeric(12,2)` on PostgreSQL, integer cents on SQLite;
//! - claiming outbox rows: PostgreSQL locks them with `FOR UPDATE SKIP LOCKED` and uses the
//!   server clock; SQLite serialises writers, so the same `UPDATE … RETURNING` is atomic there,
//!   with the lease computed from the application clock (one relay per database file);
//! - connection settings (SQLite file, pragmas and one writer at a time; PostgreSQL
//!   `search_path` and creating the schema);
//! - the locks that keep processes starting at once from creating the schema or migrating
//!   together (advisory locks on PostgreSQL, a lock file next to a SQLite database).

use std::time::Duration;

use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use sea_orm::{
    ConnectOptions, ConnectionTrait, DatabaseConnection, DbBackend, DbErr, Statement,
    TransactionTrait, Value,
};

use crate::entities::StoredPrice;
use crate::StoreOptions;

/// Longest lease a claim takes (longer ones are cut to this).
const MAX_LEASE: Duration = Duration::from_secs(24 * 3600);

/// Backend-specific connection settings, chosen from the URL before connecting.
pub(crate) fn configure(opt: &mut ConnectOptions, url: &str, options: &StoreOptions) {
    if let Some(schema) = &options.schema {
        // Ignored by SQLite.
        opt.set_schema_search_path(quote_ident(schema));
    }
    #[cfg(feature = "sqlite")]
    if url.starts_with("sqlite:") {
        create_sqlite_dir(url);
        let busy = options.acquire_timeout;
        opt.map_sqlx_sqlite_opts(move |o| {
            use sea_orm::sqlx::sqlite::{SqliteJournalMode, SqliteSynchronous};
            o.create_if_missing(true)
                .foreign_keys(true)
                .journal_mode(SqliteJournalMode::Wal)
                .synchronous(SqliteSynchronous::Normal)
                .busy_timeout(busy)
        });
    }
    #[cfg(not(feature = "sqlite"))]
    let _ = url;
}

fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// The file of a SQLite URL; `None` for an in-memory database or another URL.
fn sqlite_file(url: &str) -> Option<&std::path::Path> {
    let path = url
        .strip_prefix("sqlite://")
        .or_else(|| url.strip_prefix("sqlite:"))?;
    let path = path.split('?').next().unwrap_or_default();
    (!path.is_empty() && !path.contains(":memory:")).then(|| std::path::Path::new(path))
}

/// Creates the directory of a SQLite file URL, best effort (connecting reports real problems).
#[cfg(feature = "sqlite")]
fn create_sqlite_dir(url: &str) {
    let Some(path) = sqlite_file(url) else {
        return;
    };
    if let Some(dir) = path.parent() {
        if !dir.as_os_str().is_empty() {
            let _ = std::fs::create_dir_all(dir);
        }
    }
}

/// Largest price `numeric(12,2)` holds.
pub(crate) const MAX_PRICE_CENTS: i64 = 999_999_999_999;

/// The database flavour of a connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Dialect {
    Postgres,
    Sqlite,
}

impl Dialect {
    pub(crate) fn of(db: &impl ConnectionTrait) -> Result<Self, DbErr> {
        match db.get_database_backend() {
            DbBackend::Postgres => Ok(Dialect::Postgres),
            DbBackend::Sqlite => Ok(Dialect::Sqlite),
            other => Err(DbErr::Custom(format!(
                "unsupported database backend {other:?}"
            ))),
        }
    }

    /// `true` when the database admits one writer at a time (SQLite), so the store queues its
    /// writers in-process.
    pub(crate) fn single_writer(self) -> bool {
        self == Dialect::Sqlite
    }

    fn backend(self) -> DbBackend {
        match self {
            Dialect::Postgres => DbBackend::Postgres,
            Dialect::Sqlite => DbBackend::Sqlite,
        }
    }

    /// The stored form of a price. `None` when it does not fit `numeric(12,2)` (negative, more
    /// than two decimals, or 10^10 and above); both backends refuse the same values.
    pub(crate) fn price(self, price: Decimal) -> Option<StoredPrice> {
        let cents = price_to_cents(price)?;
        Some(match self {
            Dialect::Postgres => StoredPrice::Numeric(Decimal::new(cents, 2)),
            Dialect::Sqlite => StoredPrice::Cents(cents),
        })
    }

    /// A filter bound on the price column: `min` is a lower bound (`price >= bound`), otherwise an
    /// upper bound. Any decimal is accepted; on SQLite the bound is rounded towards the inside
    /// of the range (up for `min`, down for `max`), which keeps the comparison exact in cents.
    pub(crate) fn price_bound(self, price: Decimal, min: bool) -> Value {
        match self {
            Dialect::Postgres => Value::Decimal(Some(Box::new(price))),
            Dialect::Sqlite => {
                let scaled = price.saturating_mul(Decimal::ONE_HUNDRED);
                let rounded = if min { scaled.ceil() } else { scaled.floor() };
                let cents = i64::try_from(rounded).unwrap_or(if rounded.is_sign_negative() {
                    i64::MIN
                } else {
                    i64::MAX
                });
                Value::BigInt(Some(cents))
            }
        }
    }

    /// The statement that claims up to `limit` free unpublished outbox rows for `lease` and
    /// returns them (in any order).
    pub(crate) fn claim_outbox(self, limit: u32, lease: Duration, now: DateTime<Utc>) -> Statement {
        let lease_us = i64::try_from(lease.min(MAX_LEASE).as_micros()).unwrap_or(i64::MAX);
        match self {
            Dialect::Postgres => Statement::from_sql_and_values(
                self.backend(),
                r#"UPDATE outbox SET locked_until = now() + $2 * interval '1 microsecond'
                   WHERE id IN (
                       SELECT id FROM outbox
                       WHERE published_at IS NULL
                         AND (locked_until IS NULL OR locked_until <= now())
                       ORDER BY id
                       LIMIT $1
                       FOR UPDATE SKIP LOCKED)
                   RETURNING *"#,
                [i64::from(limit).into(), lease_us.into()],
            ),
            Dialect::Sqlite => {
                let until = now + chrono::Duration::microseconds(lease_us);
                Statement::from_sql_and_values(
                    self.backend(),
                    r#"UPDATE outbox SET locked_until = ?
                       WHERE id IN (
                           SELECT id FROM outbox
                           WHERE published_at IS NULL
                             AND (locked_until IS NULL OR locked_until <= ?)
                           ORDER BY id
                           LIMIT ?)
                       RETURNING *"#,
                    [until.into(), now.into(), i64::from(limit).into()],
                )
            }
        }
    }

    /// Creates `schema` when it does not exist (PostgreSQL; SQLite has no schemas). Checks
    /// first, so a role without `CREATE` on the database can use an existing schema.
    pub(crate) async fn ensure_schema(
        self,
        db: &DatabaseConnection,
        schema: &str,
    ) -> Result<(), DbErr> {
        if self != Dialect::Postgres {
            return Ok(());
        }
        let exists = db
            .query_one(Statement::from_sql_and_values(
                self.backend(),
                "SELECT 1 FROM pg_namespace WHERE nspname = $1",
                [schema.into()],
            ))
            .await?
            .is_some();
        if !exists {
            // Two `CREATE SCHEMA IF NOT EXISTS` racing can both find no schema, and the second
            // then fails on pg_namespace's unique index (a known PostgreSQL behaviour): first
            // starts take one lock per schema name, held until the creating transaction ends.
            let txn = db.begin().await?;
            txn.execute(Statement::from_sql_and_values(
                self.backend(),
                "SELECT pg_advisory_xact_lock(hashtext($1))",
                [format!("store-schema:{schema}").into()],
            ))
            .await?;
            txn.execute_unprepared(&format!(
                "CREATE SCHEMA IF NOT EXISTS {}",
                quote_ident(schema)
            ))
            .await?;
            txn.commit().await?;
        }
        Ok(())
    }

    /// SQLite: an exclusive lock on `<database file>.start.lock`, held while the returned file
    /// is open, so that processes starting at once on a fresh file open it (creating it and
    /// switching it to WAL) and migrate one after the other; the later ones find nothing to
    /// do. SQLite alone would let two of them both see an empty database and both create the
    /// tables, and the switch to WAL does not wait for a busy database. `None` for PostgreSQL
    /// URLs (its locks are in the database, see [`Dialect::lock_for_migration`]) and for an
    /// in-memory database.
    pub(crate) async fn lock_sqlite_start(url: &str) -> Result<Option<std::fs::File>, DbErr> {
        let Some(file) = sqlite_file(url) else {
            return Ok(None);
        };
        let mut lock_path = file.as_os_str().to_owned();
        lock_path.push(".start.lock");
        tokio::task::spawn_blocking(move || {
            let lock = std::fs::OpenOptions::new()
                .create(true)
                .truncate(false)
                .write(true)
                .open(&lock_path)?;
            lock.lock()?;
            Ok::<_, std::io::Error>(lock)
        })
        .await
        .map_err(|e| DbErr::Custom(format!("start-up lock: {e}")))?
        .map(Some)
        .map_err(|e| DbErr::Custom(format!("cannot take the start-up lock: {e}")))
    }

    /// Serialises migrations between processes for the rest of the transaction it runs in.
    /// SQLite needs nothing: its DDL takes the database write lock.
    pub(crate) async fn lock_for_migration(self, txn: &impl ConnectionTrait) -> Result<(), DbErr> {
        if self == Dialect::Postgres {
            txn.execute_unprepared(
                "SELECT pg_advisory_xact_lock(hashtext('store-migrations:' || current_schema()))",
            )
            .await?;
        }
        Ok(())
    }
}

/// `price` in hundredths, or `None` when it is negative, has more than two decimals or does not
/// fit `numeric(12,2)`.
pub(crate) fn price_to_cents(price: Decimal) -> Option<i64> {
    if price.is_sign_negative() && !price.is_zero() {
        return None;
    }
    let scaled = price.checked_mul(Decimal::ONE_HUNDRED)?;
    if scaled.fract() != Decimal::ZERO {
        return None;
    }
    let cents: i64 = scaled.trunc().try_into().ok()?;
    (cents <= MAX_PRICE_CENTS).then_some(cents)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(s: &str) -> Decimal {
        s.parse().unwrap()
    }

    #[test]
    fn prices_convert_to_exact_cents() {
        assert_eq!(price_to_cents(d("0")), Some(0));
        assert_eq!(price_to_cents(d("0.10")), Some(10));
        assert_eq!(price_to_cents(d("0.2")), Some(20));
        assert_eq!(price_to_cents(d("9999999999.99")), Some(999_999_999_999));
        assert_eq!(price_to_cents(d("10000000000")), None);
        assert_eq!(price_to_cents(d("0.001")), None);
        assert_eq!(price_to_cents(d("-0.01")), None);
        assert_eq!(price_to_cents(d("-0")), Some(0));
    }

    #[test]
    fn sqlite_bounds_keep_comparisons_exact() {
        let cents = |s, min| match Dialect::Sqlite.price_bound(d(s), min) {
            Value::BigInt(Some(c)) => c,
            other => panic!("{other:?}"),
        };
        assert_eq!(cents("1.50", true), 150);
        assert_eq!(cents("1.50", false), 150);
        // price >= 1.505 is cents >= 151; price <= 1.505 is cents <= 150.
        assert_eq!(cents("1.505", true), 151);
        assert_eq!(cents("1.505", false), 150);
        assert_eq!(cents("-0.005", true), 0);
        assert_eq!(cents("-0.005", false), -1);
        assert_eq!(cents("79228162514264337593543950335", false), i64::MAX);
    }
}
