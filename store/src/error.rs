//! Mapping database errors to [`RepoError`].
//!
//! Constraint violations are recognised by their SQLSTATE (PostgreSQL) or extended result code
//! (SQLite); the repositories turn them into [`RepoError::UnknownUser`] or
//! [`RepoError::DuplicateMobile`]. Failures to reach the database (connect, pool, I/O, server
//! shutdown, SQLite busy) become [`RepoError::Unavailable`]; everything else [`RepoError::Other`].

use mq_core::domain::RepoError;
use sea_orm::{sqlx, DbErr, RuntimeErr};

/// What kind of failure a database error is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Kind {
    /// A unique constraint was violated.
    Unique,
    /// A foreign key constraint was violated.
    ForeignKey,
    /// The database is unreachable or overloaded; retrying later may work.
    Unavailable,
    /// Anything else.
    Other,
}

/// Classifies a sea-orm error.
pub(crate) fn kind(err: &DbErr) -> Kind {
    match err {
        DbErr::ConnectionAcquire(_) => Kind::Unavailable,
        // A bad URL or an unsupported scheme is a configuration error, not an outage.
        DbErr::Conn(RuntimeErr::SqlxError(sqlx::Error::Configuration(_)))
        | DbErr::Conn(RuntimeErr::Internal(_)) => Kind::Other,
        // The server answered and refused (wrong password, no such database): not an outage,
        // and waiting at start-up (`STARTUP_TIMEOUT`) cannot help.
        DbErr::Conn(RuntimeErr::SqlxError(e @ sqlx::Error::Database(_))) => sqlx_kind(e),
        DbErr::Conn(_) => Kind::Unavailable,
        DbErr::Exec(RuntimeErr::SqlxError(e)) | DbErr::Query(RuntimeErr::SqlxError(e)) => {
            sqlx_kind(e)
        }
        _ => Kind::Other,
    }
}

fn sqlx_kind(err: &sqlx::Error) -> Kind {
    match err {
        sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::WorkerCrashed
        | sqlx::Error::Protocol(_) => Kind::Unavailable,
        sqlx::Error::Database(db) => {
            if db.is_unique_violation() {
                Kind::Unique
            } else if db.is_foreign_key_violation()
                // SQLite reports an `ON DELETE RESTRICT` refusal as SQLITE_CONSTRAINT_TRIGGER
                // (1811), which sqlx does not count as a foreign-key violation.
                || db.message().starts_with("FOREIGN KEY constraint failed")
            {
                Kind::ForeignKey
            } else if is_unavailable(db.as_ref()) {
                Kind::Unavailable
            } else {
                Kind::Other
            }
        }
        _ => Kind::Other,
    }
}

/// Database errors that mean "try again later".
fn is_unavailable(db: &dyn sqlx::error::DatabaseError) -> bool {
    let code = db.code().unwrap_or_default();
    #[cfg(feature = "postgres")]
    if db
        .try_downcast_ref::<sqlx::postgres::PgDatabaseError>()
        .is_some()
    {
        return pg_unavailable(&code);
    }
    #[cfg(feature = "sqlite")]
    if db.try_downcast_ref::<sqlx::sqlite::SqliteError>().is_some() {
        return sqlite_unavailable(&code);
    }
    let _ = code;
    false
}

/// PostgreSQL: 08xxx connection exception, 53xxx insufficient resources, 57P01..57P03 shutdown /
/// cannot connect now, 40001 serialization failure, 40P01 deadlock.
#[cfg_attr(not(feature = "postgres"), allow(dead_code))]
fn pg_unavailable(sqlstate: &str) -> bool {
    sqlstate.starts_with("08")
        || sqlstate.starts_with("53")
        || matches!(sqlstate, "57P01" | "57P02" | "57P03" | "40001" | "40P01")
}

/// SQLite: BUSY, LOCKED, IOERR, CANTOPEN (the primary code is the low byte of the extended one).
#[cfg_attr(not(feature = "sqlite"), allow(dead_code))]
fn sqlite_unavailable(code: &str) -> bool {
    code.parse::<i32>()
        .is_ok_and(|n| matches!(n & 0xff, 5 | 6 | 10 | 14))
}

/// Maps an error that has no more specific meaning in its context.
pub(crate) fn repo_err(err: DbErr) -> RepoError {
    match kind(&err) {
        Kind::Unavailable => RepoError::Unavailable(err.to_string()),
        _ => RepoError::Other(err.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unavailable_codes() {
        for code in ["08006", "08001", "53300", "57P01", "40001", "40P01"] {
            assert!(pg_unavailable(code), "{code}");
        }
        for code in ["23505", "23503", "42P01", "22003"] {
            assert!(!pg_unavailable(code), "{code}");
        }
        for code in ["5", "517", "6", "10", "14"] {
            assert!(sqlite_unavailable(code), "{code}");
        }
        for code in ["2067", "1555", "787", "1", "19", "275"] {
            assert!(!sqlite_unavailable(code), "{code}");
        }
    }

    #[test]
    fn pool_errors_are_unavailable() {
        let e = DbErr::ConnectionAcquire(sea_orm::error::ConnAcquireErr::Timeout);
        assert!(matches!(repo_err(e), RepoError::Unavailable(_)));
        let e = DbErr::Query(RuntimeErr::SqlxError(sqlx::Error::PoolClosed));
        assert!(matches!(repo_err(e), RepoError::Unavailable(_)));
        assert!(matches!(
            repo_err(DbErr::Custom("x".into())),
            RepoError::Other(_)
        ));
    }
}
