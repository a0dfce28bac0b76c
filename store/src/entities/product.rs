//! The `products` table.

use mq_core::domain::{Product, ProductStatus};
use sea_orm::entity::prelude::*;

use super::{ImageErrorList, RenditionList, StoredPrice, TextList};

/// A row of `products`.
#[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
#[sea_orm(table_name = "products")]
pub struct Model {
    /// Primary key (`product_id` in the API).
    #[sea_orm(primary_key)]
    pub id: i64,
    /// Owner, references `users.id`.
    pub user_id: i64,
    /// Name.
    pub product_name: String,
    /// Optional description.
    #[sea_orm(column_type = "Text", nullable)]
    pub product_description: Option<String>,
    /// Source image URLs (JSON array).
    #[sea_orm(column_type = "JsonBinary")]
    pub product_images: TextList,
    /// Price: `numeric(12,2)` on PostgreSQL, cents on SQLite.
    #[sea_orm(column_type = "Decimal(Some((12, 2)))")]
    pub product_price: StoredPrice,
    /// Compressed image paths, relative to the media directory (JSON array).
    #[sea_orm(column_type = "JsonBinary")]
    pub compressed_product_images: TextList,
    /// Every stored rendition (JSON array of `{index, width, height, format, bytes, path}`).
    #[sea_orm(column_type = "JsonBinary")]
    pub image_renditions: RenditionList,
    /// `pending`, `processing`, `done`, `partial` or `failed`.
    pub status: String,
    /// Images that failed (JSON array of `{index, url, reason}`).
    #[sea_orm(column_type = "JsonBinary")]
    pub image_errors: ImageErrorList,
    /// 1 on create, +1 per change.
    pub version: i64,
    /// Insert time (UTC).
    pub created_at: DateTimeUtc,
    /// Last change (UTC).
    pub updated_at: DateTimeUtc,
}

/// Relations of `products`.
#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {
    /// The owner.
    #[sea_orm(
        belongs_to = "super::user::Entity",
        from = "Column::UserId",
        to = "super::user::Column::Id"
    )]
    User,
}

impl Related<super::user::Entity> for Entity {
    fn to() -> RelationDef {
        Relation::User.def()
    }
}

impl ActiveModelBehavior for ActiveModel {}

impl TryFrom<Model> for Product {
    type Error = DbErr;

    fn try_from(m: Model) -> Result<Self, DbErr> {
        let status: ProductStatus = m.status.parse().map_err(DbErr::Type)?;
        Ok(Product {
            product_id: m.id,
            user_id: m.user_id,
            product_name: m.product_name,
            product_description: m.product_description,
            product_images: m.product_images.0,
            product_price: m.product_price.to_decimal(),
            compressed_product_images: m.compressed_product_images.0,
            image_renditions: m.image_renditions.0,
            status,
            image_errors: m.image_errors.0,
            version: m.version,
            created_at: m.created_at,
            updated_at: m.updated_at,
        })
    }
}
