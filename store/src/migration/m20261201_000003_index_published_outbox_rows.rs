//! An index on the published rows of `outbox`, by `published_at`: outbox retention deletes the
//! earliest published rows in batches, and without it every batch would scan the table.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        // Partial, like the index of unpublished rows: each index holds only the rows its reader
        // looks for. Both PostgreSQL and SQLite use it for `published_at < …`.
        manager
            .get_connection()
            .execute_unprepared(
                "CREATE INDEX idx_outbox_published ON outbox (published_at) \
                 WHERE published_at IS NOT NULL",
            )
            .await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .get_connection()
            .execute_unprepared("DROP INDEX idx_outbox_published")
            .await?;
        Ok(())
    }
}
