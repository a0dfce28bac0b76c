//! [`OutboxRepo`] for [`Store`]: claiming, publishing, failing and deleting outbox rows.

use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use mq_core::domain::{NewOutboxMessage, OutboxBacklog, OutboxMessage, OutboxRepo, RepoError};
use sea_orm::sea_query::{Expr, Order, Query, Value};
use sea_orm::{
    ActiveValue::NotSet, ColumnTrait, ConnectionTrait, EntityTrait, PaginatorTrait, QueryFilter,
    QuerySelect, Set,
};

use crate::entities::outbox::{self, Column};
use crate::entities::HeaderMap;
use crate::error::repo_err;
use crate::store::{now, Store};

/// Writes `message` to the outbox on `txn`, the transaction of the change it announces, with
/// the caller's `headers` (trace context, ...) over the message's own, a message id included.
pub(crate) async fn write(
    txn: &impl ConnectionTrait,
    mut message: NewOutboxMessage,
    headers: std::collections::BTreeMap<String, String>,
    created_at: DateTime<Utc>,
) -> Result<(), RepoError> {
    message.headers.extend(headers);
    let row = outbox::ActiveModel {
        id: NotSet,
        topic: Set(message.topic),
        message_key: Set(message.key),
        headers: Set(HeaderMap(message.headers)),
        payload: Set(message.payload),
        created_at: Set(created_at),
        published_at: Set(None),
        locked_until: Set(None),
        attempts: Set(0),
        last_error: Set(None),
    };
    outbox::Entity::insert(row)
        .exec_without_returning(txn)
        .await
        .map_err(repo_err)?;
    Ok(())
}

/// Ids per `UPDATE … WHERE id IN (…)` when marking rows published.
const IDS_PER_STATEMENT: usize = 1000;
/// Longest error text kept in `last_error`.
const MAX_ERROR_CHARS: usize = 2000;

fn no_time() -> Value {
    Value::ChronoDateTimeUtc(None)
}

#[async_trait]
impl OutboxRepo for Store {
    async fn claim_outbox(
        &self,
        limit: u32,
        lease: Duration,
    ) -> Result<Vec<OutboxMessage>, RepoError> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        let _turn = self.write_turn().await?;
        let statement = self.dialect.claim_outbox(limit, lease, now());
        let rows = outbox::Entity::find()
            .from_raw_sql(statement)
            .all(&self.db)
            .await
            .map_err(repo_err)?;
        let mut messages: Vec<OutboxMessage> = rows.into_iter().map(Into::into).collect();
        messages.sort_by_key(|m| m.id);
        Ok(messages)
    }

    async fn mark_published(&self, ids: &[i64]) -> Result<(), RepoError> {
        let now = now();
        let _turn = self.write_turn().await?;
        for chunk in ids.chunks(IDS_PER_STATEMENT) {
            outbox::Entity::update_many()
                .col_expr(Column::PublishedAt, Expr::value(now))
                .col_expr(Column::LockedUntil, Expr::value(no_time()))
                .filter(Column::Id.is_in(chunk.iter().copied()))
                .filter(Column::PublishedAt.is_null())
                .exec(&self.db)
                .await
                .map_err(repo_err)?;
        }
        Ok(())
    }

    async fn record_publish_failure(&self, id: i64, error: &str) -> Result<(), RepoError> {
        let error: String = error.chars().take(MAX_ERROR_CHARS).collect();
        let turn = self.write_turn().await?;
        let updated = outbox::Entity::update_many()
            .col_expr(Column::Attempts, Expr::col(Column::Attempts).add(1))
            .col_expr(Column::LastError, Expr::value(error))
            .col_expr(Column::LockedUntil, Expr::value(no_time()))
            .filter(Column::Id.eq(id))
            .filter(Column::PublishedAt.is_null())
            .exec(&self.db)
            .await
            .map_err(repo_err)?;
        drop(turn);
        if updated.rows_affected == 0 {
            let found = outbox::Entity::find_by_id(id)
                .count(&self.db)
                .await
                .map_err(repo_err)?;
            if found == 0 {
                return Err(RepoError::NotFound {
                    entity: "outbox message",
                    id,
                });
            }
        }
        Ok(())
    }

    async fn delete_published(
        &self,
        published_before: DateTime<Utc>,
        limit: u32,
    ) -> Result<u64, RepoError> {
        if limit == 0 {
            return Ok(0);
        }
        // `published_at < …` leaves out the unpublished rows (NULL) and lets both databases use
        // the partial index on published rows, so a batch reads only the rows it deletes.
        let earliest = Query::select()
            .column(Column::Id)
            .from(outbox::Entity)
            .and_where(Expr::col(Column::PublishedAt).lt(published_before))
            .order_by(Column::PublishedAt, Order::Asc)
            .limit(u64::from(limit))
            .to_owned();
        let _turn = self.write_turn().await?;
        let deleted = outbox::Entity::delete_many()
            .filter(Column::Id.in_subquery(earliest))
            .exec(&self.db)
            .await
            .map_err(repo_err)?;
        Ok(deleted.rows_affected)
    }

    async fn outbox_backlog(&self) -> Result<OutboxBacklog, RepoError> {
        let (unpublished, oldest_created_at): (i64, Option<DateTime<Utc>>) = outbox::Entity::find()
            .select_only()
            .column_as(Column::Id.count(), "unpublished")
            .column_as(Column::CreatedAt.min(), "oldest")
            .filter(Column::PublishedAt.is_null())
            .into_tuple()
            .one(&self.db)
            .await
            .map_err(repo_err)?
            .unwrap_or_default();
        Ok(OutboxBacklog {
            unpublished: u64::try_from(unpublished).unwrap_or_default(),
            oldest_created_at,
        })
    }
}
