//! Column value types shared by the entities.

use std::collections::BTreeMap;

use mq_core::domain::{ImageError, ImageRendition};
use rust_decimal::Decimal;
use sea_orm::sea_query::{ArrayType, ColumnType, Nullable, Value, ValueType, ValueTypeErr};
use sea_orm::{ColIdx, FromJsonQueryResult, QueryResult, TryGetError, TryGetable};
use serde::{Deserialize, Serialize};

/// A list of strings stored as JSON (`jsonb` on PostgreSQL, JSON text on SQLite).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, FromJsonQueryResult)]
pub struct TextList(pub Vec<String>);

/// The `image_errors` column: a JSON array of `{index, url, reason}` objects.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, FromJsonQueryResult)]
pub struct ImageErrorList(pub Vec<ImageError>);

/// The `image_renditions` column: a JSON array of `{index, width, height, format, bytes, path}`
/// objects.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, FromJsonQueryResult)]
pub struct RenditionList(pub Vec<ImageRendition>);

/// Outbox message headers stored as a JSON object.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, FromJsonQueryResult)]
pub struct HeaderMap(pub BTreeMap<String, String>);

/// A price as the database holds it.
///
/// PostgreSQL stores `numeric(12,2)` ([`StoredPrice::Numeric`]). SQLite has no exact decimal
/// type (sea-orm would go through `f64`), so it stores the amount in cents as an `INTEGER`
/// ([`StoredPrice::Cents`]), which is exact and orders correctly. Either way the value never
/// passes through a float. [`StoredPrice::to_decimal`] gives the amount with two decimals.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StoredPrice {
    /// PostgreSQL `numeric(12,2)`.
    Numeric(Decimal),
    /// SQLite `INTEGER`, the amount in hundredths.
    Cents(i64),
}

impl StoredPrice {
    /// The amount, always with scale 2 (`0` reads back as `0.00`).
    pub fn to_decimal(self) -> Decimal {
        match self {
            StoredPrice::Numeric(mut d) => {
                d.rescale(2);
                d
            }
            StoredPrice::Cents(c) => Decimal::new(c, 2),
        }
    }
}

impl From<StoredPrice> for Value {
    fn from(price: StoredPrice) -> Self {
        match price {
            StoredPrice::Numeric(d) => Value::Decimal(Some(Box::new(d))),
            StoredPrice::Cents(c) => Value::BigInt(Some(c)),
        }
    }
}

impl Nullable for StoredPrice {
    fn null() -> Value {
        Value::Decimal(None)
    }
}

impl ValueType for StoredPrice {
    fn try_from(v: Value) -> Result<Self, ValueTypeErr> {
        match v {
            Value::Decimal(Some(d)) => Ok(StoredPrice::Numeric(*d)),
            Value::BigInt(Some(c)) => Ok(StoredPrice::Cents(c)),
            _ => Err(ValueTypeErr),
        }
    }

    fn type_name() -> String {
        "StoredPrice".to_owned()
    }

    fn array_type() -> ArrayType {
        ArrayType::Decimal
    }

    fn column_type() -> ColumnType {
        ColumnType::Decimal(Some((12, 2)))
    }
}

impl TryGetable for StoredPrice {
    fn try_get_by<I: ColIdx>(res: &QueryResult, idx: I) -> Result<Self, TryGetError> {
        // An INTEGER column (SQLite) decodes as i64; a numeric one (PostgreSQL) refuses to, and
        // then decodes as a decimal. Never as f64.
        match <i64 as TryGetable>::try_get_by(res, idx) {
            Ok(cents) => Ok(StoredPrice::Cents(cents)),
            Err(TryGetError::Null(col)) => Err(TryGetError::Null(col)),
            Err(TryGetError::DbErr(_)) => {
                <Decimal as TryGetable>::try_get_by(res, idx).map(StoredPrice::Numeric)
            }
        }
    }
}
