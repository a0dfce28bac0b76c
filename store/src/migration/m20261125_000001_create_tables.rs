//! `users`, `products` and `outbox`.

use sea_orm::DbBackend;
use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum Users {
    Table,
    Id,
    Name,
    Mobile,
    Latitude,
    Longitude,
    CreatedAt,
    UpdatedAt,
}

#[derive(DeriveIden)]
enum Products {
    Table,
    Id,
    UserId,
    ProductName,
    ProductDescription,
    ProductImages,
    ProductPrice,
    CompressedProductImages,
    Status,
    ImageErrors,
    CreatedAt,
    UpdatedAt,
}

#[derive(DeriveIden)]
enum Outbox {
    Table,
    Id,
    Topic,
    MessageKey,
    Headers,
    Payload,
    CreatedAt,
    PublishedAt,
    LockedUntil,
    Attempts,
    LastError,
}

fn id<T: IntoIden>(col: T) -> ColumnDef {
    ColumnDef::new(col)
        .big_integer()
        .not_null()
        .auto_increment()
        .primary_key()
        .to_owned()
}

fn timestamp<T: IntoIden>(col: T) -> ColumnDef {
    ColumnDef::new(col)
        .timestamp_with_time_zone()
        .not_null()
        .to_owned()
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let pg = manager.get_database_backend() == DbBackend::Postgres;

        manager
            .create_table(
                Table::create()
                    .table(Users::Table)
                    .col(id(Users::Id))
                    .col(ColumnDef::new(Users::Name).string_len(100).not_null())
                    .col(
                        ColumnDef::new(Users::Mobile)
                            .string_len(16)
                            .not_null()
                            .unique_key(),
                    )
                    .col(ColumnDef::new(Users::Latitude).double().not_null())
                    .col(ColumnDef::new(Users::Longitude).double().not_null())
                    .col(timestamp(Users::CreatedAt))
                    .col(timestamp(Users::UpdatedAt))
                    .to_owned(),
            )
            .await?;

        // numeric(12,2) on PostgreSQL; exact integer cents on SQLite (see StoredPrice).
        let mut price = ColumnDef::new(Products::ProductPrice);
        if pg {
            price.decimal_len(12, 2);
        } else {
            price.big_integer();
        }
        price
            .not_null()
            .check(Expr::col(Products::ProductPrice).gte(0));

        // JSON lists: jsonb on PostgreSQL (jsonb_typeof), JSON text on SQLite (json_type).
        let array_check = |col: Products| -> SimpleExpr {
            let name = col.to_string();
            if pg {
                Expr::cust(format!("jsonb_typeof(\"{name}\") = 'array'"))
            } else {
                Expr::cust(format!("json_type(\"{name}\") = 'array'"))
            }
        };

        manager
            .create_table(
                Table::create()
                    .table(Products::Table)
                    .col(id(Products::Id))
                    .col(ColumnDef::new(Products::UserId).big_integer().not_null())
                    .col(
                        ColumnDef::new(Products::ProductName)
                            .string_len(255)
                            .not_null(),
                    )
                    .col(ColumnDef::new(Products::ProductDescription).text().null())
                    .col(
                        ColumnDef::new(Products::ProductImages)
                            .json_binary()
                            .not_null()
                            .check(array_check(Products::ProductImages)),
                    )
                    .col(price)
                    .col(
                        ColumnDef::new(Products::CompressedProductImages)
                            .json_binary()
                            .not_null()
                            .default("[]")
                            .check(array_check(Products::CompressedProductImages)),
                    )
                    .col(
                        ColumnDef::new(Products::Status)
                            .string_len(16)
                            .not_null()
                            .default("pending")
                            .check(Expr::col(Products::Status).is_in([
                                "pending",
                                "processing",
                                "done",
                                "partial",
                                "failed",
                            ])),
                    )
                    .col(
                        ColumnDef::new(Products::ImageErrors)
                            .json_binary()
                            .not_null()
                            .default("[]")
                            .check(array_check(Products::ImageErrors)),
                    )
                    .col(timestamp(Products::CreatedAt))
                    .col(timestamp(Products::UpdatedAt))
                    .foreign_key(
                        ForeignKey::create()
                            .name("fk_products_user_id")
                            .from(Products::Table, Products::UserId)
                            .to(Users::Table, Users::Id)
                            .on_delete(ForeignKeyAction::Restrict),
                    )
                    .to_owned(),
            )
            .await?;

        // Listing one user's products in id order.
        manager
            .create_index(
                Index::create()
                    .name("idx_products_user_id_id")
                    .table(Products::Table)
                    .col(Products::UserId)
                    .col(Products::Id)
                    .to_owned(),
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(Outbox::Table)
                    .col(id(Outbox::Id))
                    .col(ColumnDef::new(Outbox::Topic).string_len(255).not_null())
                    .col(ColumnDef::new(Outbox::MessageKey).text().null())
                    .col(ColumnDef::new(Outbox::Headers).json_binary().not_null())
                    .col(ColumnDef::new(Outbox::Payload).json_binary().not_null())
                    .col(timestamp(Outbox::CreatedAt))
                    .col(
                        ColumnDef::new(Outbox::PublishedAt)
                            .timestamp_with_time_zone()
                            .null(),
                    )
                    .col(
                        ColumnDef::new(Outbox::LockedUntil)
                            .timestamp_with_time_zone()
                            .null(),
                    )
                    .col(
                        ColumnDef::new(Outbox::Attempts)
                            .integer()
                            .not_null()
                            .default(0),
                    )
                    .col(ColumnDef::new(Outbox::LastError).text().null())
                    .to_owned(),
            )
            .await?;

        // The relay only ever scans unpublished rows; keep that index small.
        manager
            .get_connection()
            .execute_unprepared(
                "CREATE INDEX idx_outbox_unpublished ON outbox (id) WHERE published_at IS NULL",
            )
            .await?;

        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for table in ["outbox", "products", "users"] {
            manager
                .drop_table(Table::drop().table(Alias::new(table)).to_owned())
                .await?;
        }
        Ok(())
    }
}
