use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// A user who owns products.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(feature = "openapi", schema(example = json!({
    "id": 1, "name": "Ada Lovelace", "mobile": "+447700900123", "latitude": 51.5074, "longitude": -0.1278,
    "created_at": "2026-11-25T10:00:00Z", "updated_at": "2026-11-25T10:00:00Z"
})))]
pub struct User {
    /// Database id.
    pub id: i64,
    /// Display name, 1..=100 characters.
    pub name: String,
    /// Phone number: 7–15 digits with an optional leading `+`; unique.
    pub mobile: String,
    /// -90..=90.
    pub latitude: f64,
    /// -180..=180.
    pub longitude: f64,
    /// When the row was inserted (UTC).
    pub created_at: DateTime<Utc>,
    /// When the row last changed (UTC).
    pub updated_at: DateTime<Utc>,
}

/// A validated user to insert.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NewUser {
    /// See [`User::name`].
    pub name: String,
    /// See [`User::mobile`].
    pub mobile: String,
    /// See [`User::latitude`].
    pub latitude: f64,
    /// See [`User::longitude`].
    pub longitude: f64,
}

/// A change to a user's fields: `None` leaves a field as it is. Validated like [`NewUser`].
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct UserPatch {
    /// A new [`User::name`].
    pub name: Option<String>,
    /// A new [`User::mobile`]; it stays unique.
    pub mobile: Option<String>,
    /// A new [`User::latitude`].
    pub latitude: Option<f64>,
    /// A new [`User::longitude`].
    pub longitude: Option<f64>,
}

/// Cursor for listing users. Results are ordered by `id` ascending.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserFilter {
    /// Page size, 1..=100.
    pub limit: u32,
    /// Only users with an id greater than this (the previous page's `next`).
    pub after: Option<i64>,
}
