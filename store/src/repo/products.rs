//! [`ProductRepo`] for [`Store`]: products, their outbox rows, listing and consumer results.

use std::collections::BTreeMap;

use async_trait::async_trait;
use mq_core::domain::{
    Created, IdempotencyKey, NewOutboxMessage, NewProduct, Page, ProcessingResult, Product,
    ProductChange, ProductEvent, ProductFilter, ProductRepo, ProductStatus, Recorded, RepoError,
    PRODUCTS_CREATED_TOPIC,
};
use rust_decimal::Decimal;
use sea_orm::sea_query::{Expr, Func, LikeExpr};
use sea_orm::{
    ActiveModelTrait, ActiveValue::NotSet, ColumnTrait, DatabaseTransaction, DbErr, EntityTrait,
    QueryFilter, QueryOrder, QuerySelect, Set,
};

use crate::entities::{product, ImageErrorList, RenditionList, StoredPrice, TextList};
use crate::error::{kind, repo_err, Kind};
use crate::store::{now, Store};

/// Largest page [`ProductRepo::list_products`] returns.
const MAX_PAGE: u32 = 100;

fn to_product(model: product::Model) -> Result<Product, RepoError> {
    Product::try_from(model).map_err(|e: DbErr| RepoError::Other(e.to_string()))
}

/// `text` as a `LIKE` pattern that matches it anywhere, with `\` as the escape character.
fn contains_pattern(text: &str) -> String {
    let mut pattern = String::with_capacity(text.len() + 2);
    pattern.push('%');
    for c in text.to_lowercase().chars() {
        if matches!(c, '%' | '_' | '\\') {
            pattern.push('\\');
        }
        pattern.push(c);
    }
    pattern.push('%');
    pattern
}

impl Store {
    /// The stored form of `price`, or the error for a price the column cannot hold.
    fn stored_price(&self, price: Decimal) -> Result<StoredPrice, RepoError> {
        self.dialect.price(price).ok_or_else(|| {
            RepoError::Other(format!(
                "price {price} is not between 0 and 9999999999.99 with at most 2 decimals"
            ))
        })
    }
}

/// The outbox message announcing `version` of product `id` on `topic`, keyed by the id.
pub(super) fn product_event(
    topic: &str,
    id: i64,
    version: i64,
) -> Result<NewOutboxMessage, RepoError> {
    let payload = serde_json::to_value(ProductEvent {
        product_id: id,
        version: Some(version),
    })
    .map_err(|e| RepoError::Other(e.to_string()))?;
    Ok(NewOutboxMessage::new(topic, Some(id.to_string()), payload))
}

/// Inserts a product (status `pending`) and its `products.created` outbox row on `txn`; the
/// caller commits.
async fn insert_product(
    txn: &DatabaseTransaction,
    price: StoredPrice,
    new: NewProduct,
    headers: BTreeMap<String, String>,
) -> Result<Product, RepoError> {
    let user_id = new.user_id;
    let now = now();
    let row = product::ActiveModel {
        id: NotSet,
        user_id: Set(user_id),
        product_name: Set(new.product_name),
        product_description: Set(new.product_description),
        product_images: Set(TextList(new.product_images)),
        product_price: Set(price),
        compressed_product_images: Set(TextList::default()),
        image_renditions: Set(RenditionList::default()),
        status: Set(ProductStatus::Pending.as_str().to_owned()),
        image_errors: Set(ImageErrorList::default()),
        version: Set(1),
        created_at: Set(now),
        updated_at: Set(now),
    };
    let model = match row.insert(txn).await {
        Ok(model) => model,
        Err(e) if kind(&e) == Kind::ForeignKey => return Err(RepoError::UnknownUser(user_id)),
        Err(e) => return Err(repo_err(e)),
    };

    let event = product_event(PRODUCTS_CREATED_TOPIC, model.id, model.version)?;
    super::outbox::write(txn, event, headers, now).await?;
    to_product(model)
}

#[async_trait]
impl ProductRepo for Store {
    async fn create_product(
        &self,
        new: NewProduct,
        headers: BTreeMap<String, String>,
    ) -> Result<Product, RepoError> {
        let price = self.stored_price(new.product_price)?;
        self.in_transaction(move |txn| Box::pin(insert_product(txn, price, new, headers)))
            .await
    }

    async fn create_product_idempotent(
        &self,
        new: NewProduct,
        headers: BTreeMap<String, String>,
        key: &IdempotencyKey,
    ) -> Result<Created<Product>, RepoError> {
        let price = self.stored_price(new.product_price)?;
        self.create_idempotent(key, |txn| {
            Box::pin(insert_product(txn, price, new.clone(), headers.clone()))
        })
        .await
    }

    async fn get_product(&self, id: i64) -> Result<Option<Product>, RepoError> {
        product::Entity::find_by_id(id)
            .one(&self.db)
            .await
            .map_err(repo_err)?
            .map(to_product)
            .transpose()
    }

    async fn list_products(&self, filter: &ProductFilter) -> Result<Page<Product>, RepoError> {
        use product::Column;

        let limit = filter.limit.clamp(1, MAX_PAGE);
        let mut query = product::Entity::find();
        if let Some(user_id) = filter.user_id {
            query = query.filter(Column::UserId.eq(user_id));
        }
        if let Some(min) = filter.min_price {
            query = query.filter(Column::ProductPrice.gte(self.dialect.price_bound(min, true)));
        }
        if let Some(max) = filter.max_price {
            query = query.filter(Column::ProductPrice.lte(self.dialect.price_bound(max, false)));
        }
        if let Some(q) = filter.q.as_deref().filter(|q| !q.is_empty()) {
            // LOWER(name) LIKE '%q%': case-insensitive on both backends (SQLite folds ASCII only).
            query = query.filter(
                Expr::expr(Func::lower(Expr::col((
                    product::Entity,
                    Column::ProductName,
                ))))
                .like(LikeExpr::new(contains_pattern(q)).escape('\\')),
            );
        }
        if let Some(after) = filter.after {
            query = query.filter(Column::Id.gt(after));
        }
        let rows = query
            .order_by_asc(Column::Id)
            .limit(u64::from(limit) + 1)
            .all(&self.db)
            .await
            .map_err(repo_err)?;
        super::keyset_page(rows, limit, |row| row.id, to_product)
    }

    async fn change_product(
        &self,
        id: i64,
        change: ProductChange,
        if_version: Option<i64>,
        headers: BTreeMap<String, String>,
        key: Option<IdempotencyKey>,
    ) -> Result<Created<Product>, RepoError> {
        if let ProductChange::Update(patch) = &change {
            if let Some(price) = patch.product_price {
                self.stored_price(price)?;
            }
        }
        let dialect = self.dialect;
        let change = super::idempotency::as_write(move |txn| {
            Box::pin(super::lifecycle::change(
                txn,
                dialect,
                id,
                change.clone(),
                if_version,
                headers.clone(),
            ))
        });
        match key {
            Some(key) => self.create_idempotent(&key, change).await,
            None => self.in_transaction(change).await.map(Created::New),
        }
    }

    async fn mark_processing(
        &self,
        id: i64,
        version: Option<i64>,
    ) -> Result<Option<Product>, RepoError> {
        let turn = self.write_turn().await?;
        super::lifecycle::mark_processing(&self.db, id, version).await?;
        drop(turn);
        self.get_product(id).await
    }

    async fn record_result(
        &self,
        id: i64,
        version: i64,
        result: &ProcessingResult,
    ) -> Result<Recorded, RepoError> {
        let result = result.clone();
        self.in_transaction(move |txn| {
            Box::pin(
                async move { super::lifecycle::record_result(txn, id, version, &result).await },
            )
        })
        .await
    }

    async fn count_by_status(&self) -> Result<Vec<(ProductStatus, u64)>, RepoError> {
        use product::Column;

        let rows: Vec<(String, i64)> = product::Entity::find()
            .select_only()
            .column(Column::Status)
            .column_as(Column::Id.count(), "n")
            .group_by(Column::Status)
            .into_tuple()
            .all(&self.db)
            .await
            .map_err(repo_err)?;
        let mut counts: Vec<(ProductStatus, u64)> =
            ProductStatus::ALL.iter().map(|&s| (s, 0)).collect();
        for (status, n) in rows {
            let status: ProductStatus = status.parse().map_err(RepoError::Other)?;
            if let Some(entry) = counts.iter_mut().find(|(s, _)| *s == status) {
                entry.1 = u64::try_from(n).unwrap_or_default();
            }
        }
        Ok(counts)
    }

    async fn ping(&self) -> Result<(), RepoError> {
        self.db.ping().await.map_err(repo_err)
    }
}

#[cfg(test)]
mod tests {
    use super::contains_pattern;

    #[test]
    fn like_patterns_escape_wildcards() {
        assert_eq!(contains_pattern("Ab"), "%ab%");
        assert_eq!(contains_pattern("50%_\\"), "%50\\%\\_\\\\%");
    }
}
