//! sea-orm-migration migrations. [`crate::migrate`] applies the pending ones at start-up.

use sea_orm_migration::prelude::*;

mod m20261125_000001_create_tables;
mod m20261201_000002_create_idempotency_keys;
mod m20261201_000003_index_published_outbox_rows;
mod m20261203_000004_add_product_versions;
mod m20261203_000005_add_image_renditions;

/// All migrations of the store, in order.
pub struct Migrator;

#[async_trait::async_trait]
impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![
            Box::new(m20261125_000001_create_tables::Migration),
            Box::new(m20261201_000002_create_idempotency_keys::Migration),
            Box::new(m20261201_000003_index_published_outbox_rows::Migration),
            Box::new(m20261203_000004_add_product_versions::Migration),
            Box::new(m20261203_000005_add_image_renditions::Migration),
        ]
    }
}
