//! Schemas of what the handlers read by hand (request bodies are validated field by field from a
//! JSON object, see [`super::validate`]), for the OpenAPI document. Tests check them against the
//! validation rules.

#![allow(dead_code)] // Read only by the OpenAPI derive.

use utoipa::{IntoParams, IntoResponses, ToSchema};

pub(super) use super::error::ErrorBody;

/// `POST /users`.
#[derive(ToSchema)]
#[schema(example = json!({"name": "Ada Lovelace", "mobile": "+447700900123", "latitude": 51.5074, "longitude": -0.1278}))]
pub(super) struct NewUserRequest {
    /// Display name, not blank; no control characters (U+0000–U+001F, U+007F).
    #[schema(min_length = 1, max_length = 100)]
    name: String,
    /// 7 to 15 digits with an optional leading `+`; unique among users.
    #[schema(pattern = r"^\+?[0-9]{7,15}$")]
    mobile: String,
    /// Degrees north.
    #[schema(minimum = -90, maximum = 90)]
    latitude: f64,
    /// Degrees east.
    #[schema(minimum = -180, maximum = 180)]
    longitude: f64,
}

/// `POST /products`.
#[derive(ToSchema)]
#[schema(example = json!({
    "user_id": 1,
    "product_name": "Desk lamp",
    "product_description": "Brass, 40 cm",
    "product_images": ["https://images.example.com/lamp-front.jpg", "https://images.example.com/lamp-side.png"],
    "product_price": 49.9
}))]
pub(super) struct NewProductRequest {
    /// An existing user (422 otherwise).
    #[schema(minimum = 1)]
    user_id: i64,
    /// Not blank; no control characters (U+0000–U+001F, U+007F).
    #[schema(min_length = 1, max_length = 255)]
    product_name: String,
    /// Optional; `null` or absent means none. Tab, line feed and carriage return are allowed,
    /// the other control characters (U+0000–U+001F, U+007F) are not.
    #[schema(max_length = 10000)]
    product_description: Option<String>,
    /// The source images.
    #[schema(min_items = 1, max_items = 20)]
    product_images: Vec<ImageUrl>,
    /// At least 0, at most 9999999999.99, at most 2 decimals; a JSON number or a numeric string.
    #[schema(value_type = f64, minimum = 0, maximum = 9999999999.99, multiple_of = 0.01)]
    product_price: String,
}

/// `PATCH /users/{id}`: at least one field; the rules of `POST /users`.
#[derive(ToSchema)]
#[schema(example = json!({"mobile": "+447700900124"}))]
pub(super) struct UserPatchRequest {
    /// Display name, not blank; no control characters.
    #[schema(min_length = 1, max_length = 100)]
    name: Option<String>,
    /// 7 to 15 digits with an optional leading `+`; unique among users (409 otherwise).
    #[schema(pattern = r"^\+?[0-9]{7,15}$")]
    mobile: Option<String>,
    /// Degrees north.
    #[schema(minimum = -90, maximum = 90)]
    latitude: Option<f64>,
    /// Degrees east.
    #[schema(minimum = -180, maximum = 180)]
    longitude: Option<f64>,
}

/// `PATCH /products/{id}`: at least one field; the rules of `POST /products`. A product keeps
/// its owner (`user_id` is a 422). Images that differ from the stored ones send the product
/// back to `pending`.
#[derive(ToSchema)]
#[schema(example = json!({"product_price": 44.5}))]
pub(super) struct ProductPatchRequest {
    /// Not blank; no control characters.
    #[schema(min_length = 1, max_length = 255)]
    product_name: Option<String>,
    /// `null` removes the description.
    #[schema(max_length = 10000)]
    product_description: Option<String>,
    /// The source images.
    #[schema(min_items = 1, max_items = 20)]
    product_images: Option<Vec<ImageUrl>>,
    /// At least 0, at most 9999999999.99, at most 2 decimals; a JSON number or a numeric string.
    #[schema(value_type = Option<f64>, minimum = 0, maximum = 9999999999.99, multiple_of = 0.01)]
    product_price: Option<String>,
}

/// The `If-Match` request header of the product writes.
#[derive(IntoParams)]
#[into_params(parameter_in = Header)]
pub(super) struct IfMatchHeader {
    /// The `ETag` of the product as the client last read it: the write happens only while the
    /// product is at that version, else 412 (the status part of the tag is not compared).
    /// `*` or absent: whatever the version.
    #[param(rename = "If-Match")]
    if_match: Option<String>,
}

/// Query of `GET /users`; results are ordered by `id`.
#[derive(IntoParams)]
#[into_params(parameter_in = Query)]
pub(super) struct ListUsersQuery {
    /// Page size (default 20).
    #[param(minimum = 1, maximum = 100)]
    limit: Option<u32>,
    /// The previous page's `next`.
    #[param(minimum = 0)]
    after: Option<i64>,
}

/// An `http` or `https` URL naming a host, at most 2048 characters, without control characters,
/// whitespace or invisible characters (percent-encode them). Stored as sent; a Unicode host is
/// fetched by its punycode name.
#[derive(ToSchema)]
#[schema(
    format = "uri",
    pattern = r"^[hH][tT][tT][pP][sS]?://[A-Za-z0-9.-]+(:[0-9]{1,5})?([/?#]\S*)?$",
    example = "https://images.example.com/lamp-front.jpg"
)]
pub(super) struct ImageUrl(String);

/// The `Idempotency-Key` request header of the create routes.
#[derive(IntoParams)]
#[into_params(parameter_in = Header)]
pub(super) struct IdempotencyHeader {
    /// Makes the request safe to retry: a retry with the same key and body returns the original
    /// response (with `Idempotent-Replayed: true`) and creates nothing; the same key with another
    /// body is a 422. A UUID is a good key.
    #[param(
        rename = "Idempotency-Key",
        min_length = 1,
        max_length = 255,
        pattern = r"^[!-~]+$"
    )]
    idempotency_key: Option<String>,
}

/// Query of `GET /products`; results are ordered by `product_id`.
#[derive(IntoParams)]
#[into_params(parameter_in = Query)]
pub(super) struct ListProductsQuery {
    /// Only this user's products.
    #[param(minimum = 1)]
    user_id: Option<i64>,
    /// Price at least this.
    #[param(value_type = Option<f64>, minimum = 0)]
    min_price: Option<String>,
    /// Price at most this.
    #[param(value_type = Option<f64>, minimum = 0)]
    max_price: Option<String>,
    /// Name contains this text (case-insensitive).
    #[param(max_length = 255)]
    q: Option<String>,
    /// Page size (default 20).
    #[param(minimum = 1, maximum = 100)]
    limit: Option<u32>,
    /// The previous page's `next`.
    #[param(minimum = 0)]
    after: Option<i64>,
}

/// `GET /healthz` and `GET /readyz` when all is well.
#[derive(ToSchema)]
#[schema(example = json!({"status": "ok"}))]
pub(super) struct Status {
    /// `ok` (healthz) or `ready` (readyz).
    status: String,
}

/// The error answers `POST /users` and `POST /products` share.
#[derive(IntoResponses)]
pub(super) enum CreateErrors {
    /// Malformed JSON or Idempotency-Key.
    #[response(status = 400)]
    BadRequest(ErrorBody),
    /// `API_TOKEN` is set and the bearer token is missing or wrong.
    #[response(status = 401)]
    Unauthorized(ErrorBody),
    /// Body too large.
    #[response(status = 413)]
    PayloadTooLarge(ErrorBody),
    /// Not `application/json`.
    #[response(status = 415)]
    UnsupportedMediaType(ErrorBody),
    /// Invalid fields (all listed; for a product an unknown `user_id` too), or an
    /// Idempotency-Key reused for a different body.
    #[response(status = 422)]
    Unprocessable(ErrorBody),
    /// Database unavailable; retry later.
    #[response(status = 503)]
    Unavailable(ErrorBody),
}

/// The error answers of the writes without a body (`DELETE`, `reprocess`).
#[derive(IntoResponses)]
pub(super) enum ChangeErrors {
    /// The id is not a positive integer, or a malformed Idempotency-Key.
    #[response(status = 400)]
    BadRequest(ErrorBody),
    /// `API_TOKEN` is set and the bearer token is missing or wrong.
    #[response(status = 401)]
    Unauthorized(ErrorBody),
    /// An Idempotency-Key reused for a different request.
    #[response(status = 422)]
    Unprocessable(ErrorBody),
    /// Database unavailable; retry later.
    #[response(status = 503)]
    Unavailable(ErrorBody),
}
