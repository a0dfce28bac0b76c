//! The `users` table.

use sea_orm::entity::prelude::*;

/// A row of `users`.
#[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
#[sea_orm(table_name = "users")]
pub struct Model {
    /// Primary key.
    #[sea_orm(primary_key)]
    pub id: i64,
    /// Display name.
    pub name: String,
    /// Unique phone number.
    #[sea_orm(unique)]
    pub mobile: String,
    /// Latitude in degrees.
    #[sea_orm(column_type = "Double")]
    pub latitude: f64,
    /// Longitude in degrees.
    #[sea_orm(column_type = "Double")]
    pub longitude: f64,
    /// Insert time (UTC).
    pub created_at: DateTimeUtc,
    /// Last change (UTC).
    pub updated_at: DateTimeUtc,
}

/// Relations of `users`.
#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {
    /// A user owns products.
    #[sea_orm(has_many = "super::product::Entity")]
    Products,
}

impl Related<super::product::Entity> for Entity {
    fn to() -> RelationDef {
        Relation::Products.def()
    }
}

impl ActiveModelBehavior for ActiveModel {}

impl From<Model> for mq_core::domain::User {
    fn from(m: Model) -> Self {
        Self {
            id: m.id,
            name: m.name,
            mobile: m.mobile,
            latitude: m.latitude,
            longitude: m.longitude,
            created_at: m.created_at,
            updated_at: m.updated_at,
        }
    }
}
