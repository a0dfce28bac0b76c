//! Products that change: updates, reprocessing and deletes, each with the outbox row that
//! announces it, and the image consumer's version-checked steps.
//!
//! Every change takes the row's lock (`SELECT … FOR UPDATE` on PostgreSQL; SQLite has one writer
//! at a time), so that the version it reads is the one it writes over: two concurrent changes
//! produce two versions, never one lost update. The consumer's writes carry the version of the
//! event they act on and match only a row still at that version, which is what makes events
//! seen out of order, or twice, harmless.

use std::collections::BTreeMap;

use mq_core::domain::{
    NewOutboxMessage, ProcessingResult, Product, ProductChange, ProductPatch, ProductProcessed,
    ProductStatus, Recorded, RepoError, PRODUCTS_DELETED_TOPIC, PRODUCTS_PROCESSED_TOPIC,
    PRODUCTS_UPDATED_TOPIC,
};
use sea_orm::sea_query::{Expr, Value};
use sea_orm::{
    ActiveModelTrait, ColumnTrait, ConnectionTrait, DatabaseTransaction, DbErr, EntityTrait,
    IntoActiveModel, QueryFilter, QuerySelect, Set,
};

use super::products::product_event;
use crate::dialect::Dialect;
use crate::entities::product::{self, Column};
use crate::entities::{ImageErrorList, RenditionList, TextList};
use crate::error::repo_err;
use crate::store::now;

fn to_product(model: product::Model) -> Result<Product, RepoError> {
    Product::try_from(model).map_err(|e: DbErr| RepoError::Other(e.to_string()))
}

fn not_found(id: i64) -> RepoError {
    RepoError::NotFound {
        entity: "product",
        id,
    }
}

/// Applies `change` to product `id` on `txn` and writes the outbox row that announces it; see
/// `ProductRepo::change_product`. The caller commits.
pub(super) async fn change(
    txn: &DatabaseTransaction,
    dialect: Dialect,
    id: i64,
    change: ProductChange,
    if_version: Option<i64>,
    headers: BTreeMap<String, String>,
) -> Result<Product, RepoError> {
    if dialect == Dialect::Sqlite {
        // SQLite has no row locks, and a transaction that reads first fails with BUSY_SNAPSHOT
        // when another process writes before it does: writing first takes the database's write
        // lock for the whole transaction.
        product::Entity::update_many()
            .col_expr(Column::Version, Expr::col(Column::Version).into())
            .filter(Column::Id.eq(id))
            .exec(txn)
            .await
            .map_err(repo_err)?;
    }
    let row = product::Entity::find_by_id(id)
        .lock_exclusive()
        .one(txn)
        .await
        .map_err(repo_err)?
        .ok_or_else(|| not_found(id))?;
    if let Some(expected) = if_version.filter(|&expected| expected != row.version) {
        return Err(RepoError::VersionMismatch {
            entity: "product",
            id,
            expected,
            current: row.version,
        });
    }
    let version = row.version + 1;
    let now = now();
    match change {
        ProductChange::Delete => {
            product::Entity::delete_by_id(id)
                .exec(txn)
                .await
                .map_err(repo_err)?;
            let event = product_event(PRODUCTS_DELETED_TOPIC, id, version)?;
            super::outbox::write(txn, event, headers, now).await?;
            let mut deleted = to_product(row)?;
            deleted.version = version;
            Ok(deleted)
        }
        ProductChange::Reprocess => {
            let mut changed = row.into_active_model();
            changed.status = Set(ProductStatus::Pending.as_str().to_owned());
            write_version(txn, changed, version, now, headers).await
        }
        ProductChange::Update(patch) => {
            let changed = patched(&row, patch, dialect)?;
            if !changed.is_changed() {
                return to_product(row);
            }
            write_version(txn, changed, version, now, headers).await
        }
    }
}

/// `row` with the fields of `patch` that differ from it set; images that differ also set the
/// status back to `pending`.
fn patched(
    row: &product::Model,
    patch: ProductPatch,
    dialect: Dialect,
) -> Result<product::ActiveModel, RepoError> {
    let mut changed = row.clone().into_active_model();
    if let Some(name) = patch.product_name.filter(|name| *name != row.product_name) {
        changed.product_name = Set(name);
    }
    if let Some(description) = patch
        .product_description
        .filter(|description| *description != row.product_description)
    {
        changed.product_description = Set(description);
    }
    if let Some(price) = patch.product_price {
        let stored = dialect
            .price(price)
            .ok_or_else(|| RepoError::Other(format!("price {price} does not fit the column")))?;
        if stored.to_decimal() != row.product_price.to_decimal() {
            changed.product_price = Set(stored);
        }
    }
    if let Some(images) = patch
        .product_images
        .filter(|images| *images != row.product_images.0)
    {
        changed.product_images = Set(TextList(images));
        changed.status = Set(ProductStatus::Pending.as_str().to_owned());
    }
    Ok(changed)
}

/// Writes `changed` as `version`, with its `products.updated` outbox row.
async fn write_version(
    txn: &DatabaseTransaction,
    mut changed: product::ActiveModel,
    version: i64,
    now: chrono::DateTime<chrono::Utc>,
    headers: BTreeMap<String, String>,
) -> Result<Product, RepoError> {
    changed.version = Set(version);
    changed.updated_at = Set(now);
    let model = changed.update(txn).await.map_err(repo_err)?;
    let event = product_event(PRODUCTS_UPDATED_TOPIC, model.id, version)?;
    super::outbox::write(txn, event, headers, now).await?;
    to_product(model)
}

/// Sets product `id` to `processing` when it is `pending` and, with `version`, at that version.
/// A product already `processing` is left as it is, `updated_at` included, so that its
/// representation (and `ETag`) stays the same while it is processed.
pub(super) async fn mark_processing(
    db: &impl ConnectionTrait,
    id: i64,
    version: Option<i64>,
) -> Result<(), RepoError> {
    let mut update = product::Entity::update_many()
        .col_expr(
            Column::Status,
            Expr::value(ProductStatus::Processing.as_str()),
        )
        .col_expr(Column::UpdatedAt, Expr::value(now()))
        .filter(Column::Id.eq(id))
        .filter(Column::Status.eq(ProductStatus::Pending.as_str()));
    if let Some(version) = version {
        update = update.filter(Column::Version.eq(version));
    }
    update.exec(db).await.map_err(repo_err)?;
    Ok(())
}

/// Records `result` for `version` of product `id` on `txn`, with its `products.processed`
/// outbox row; see `ProductRepo::record_result`. The caller commits.
pub(super) async fn record_result(
    txn: &DatabaseTransaction,
    id: i64,
    version: i64,
    result: &ProcessingResult,
) -> Result<Recorded, RepoError> {
    let status = result.status.as_str();
    let compressed = Value::from(TextList(result.compressed_product_images.clone()));
    let renditions = Value::from(RenditionList(result.image_renditions.clone()));
    let errors = Value::from(ImageErrorList(result.image_errors.clone()));
    // One statement, matching only the version the result was made for, and only while that
    // version has no final status yet: the first result recorded for a version is its result,
    // and what the `products.processed` event announced stays true.
    let updated = product::Entity::update_many()
        .col_expr(Column::Status, Expr::value(status))
        .col_expr(Column::CompressedProductImages, Expr::value(compressed))
        .col_expr(Column::ImageRenditions, Expr::value(renditions))
        .col_expr(Column::ImageErrors, Expr::value(errors))
        .col_expr(Column::UpdatedAt, Expr::value(now()))
        .filter(Column::Id.eq(id))
        .filter(Column::Version.eq(version))
        .filter(Column::Status.is_in([
            ProductStatus::Pending.as_str(),
            ProductStatus::Processing.as_str(),
        ]))
        .exec(txn)
        .await
        .map_err(repo_err)?;
    if updated.rows_affected == 0 {
        let current = product::Entity::find_by_id(id)
            .one(txn)
            .await
            .map_err(repo_err)?
            .map(to_product)
            .transpose()?;
        return Ok(match current {
            // A redelivery that came to the same result: nothing to do.
            Some(row)
                if row.version == version
                    && row.status == result.status
                    && row.compressed_product_images == result.compressed_product_images
                    && row.image_renditions == result.image_renditions
                    && row.image_errors == result.image_errors =>
            {
                Recorded::Unchanged
            }
            _ => Recorded::Superseded,
        });
    }
    let processed = ProductProcessed {
        product_id: id,
        version,
        status: result.status,
        compressed_product_images: result.compressed_product_images.clone(),
        image_renditions: result.image_renditions.clone(),
        image_errors: result.image_errors.clone(),
    };
    let payload = serde_json::to_value(processed).map_err(|e| RepoError::Other(e.to_string()))?;
    let event = NewOutboxMessage::new(PRODUCTS_PROCESSED_TOPIC, Some(id.to_string()), payload);
    // Downstream systems may not exist: without a subscribed group the event is dropped, not
    // kept (memory) or refused as unroutable (RabbitMQ), which would hold the relay up.
    let headers = BTreeMap::from([(
        mq_core::headers::DROP_IF_UNROUTED.to_owned(),
        "true".to_owned(),
    )]);
    super::outbox::write(txn, event, headers, now()).await?;
    Ok(Recorded::Applied)
}
