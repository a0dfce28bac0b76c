use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

/// Where a product is in the image pipeline.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "lowercase")]
pub enum ProductStatus {
    /// Stored, images not processed yet.
    Pending,
    /// A consumer is working on the images.
    Processing,
    /// Every image was compressed.
    Done,
    /// Some images were compressed, the others are listed in `image_errors`.
    Partial,
    /// No image could be compressed.
    Failed,
}

impl ProductStatus {
    /// Every status, in pipeline order.
    pub const ALL: [ProductStatus; 5] = [
        ProductStatus::Pending,
        ProductStatus::Processing,
        ProductStatus::Done,
        ProductStatus::Partial,
        ProductStatus::Failed,
    ];

    /// The name stored in the database and shown in JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            ProductStatus::Pending => "pending",
            ProductStatus::Processing => "processing",
            ProductStatus::Done => "done",
            ProductStatus::Partial => "partial",
            ProductStatus::Failed => "failed",
        }
    }

    /// `true` once the consumer has recorded a result; a redelivered message is then skipped.
    pub fn is_final(self) -> bool {
        matches!(
            self,
            ProductStatus::Done | ProductStatus::Partial | ProductStatus::Failed
        )
    }
}

impl std::fmt::Display for ProductStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for ProductStatus {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(match s {
            "pending" => ProductStatus::Pending,
            "processing" => ProductStatus::Processing,
            "done" => ProductStatus::Done,
            "partial" => ProductStatus::Partial,
            "failed" => ProductStatus::Failed,
            other => return Err(format!("unknown product status `{other}`")),
        })
    }
}

/// An image that could not be processed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ImageError {
    /// Index into `product_images`.
    pub index: u32,
    /// The source URL.
    pub url: String,
    /// Why it failed, for humans.
    pub reason: String,
}

/// One stored rendition of a product image (a size in a format): what a storefront's `srcset`
/// and `<picture>` need.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(feature = "openapi", schema(example = json!({
    "index": 0, "width": 320, "height": 240, "format": "webp", "bytes": 14022,
    "path": "products/42/0-320-8d1c0b7e6f5a4d3c.webp",
    "url": "https://cdn.example.com/media/products/42/0-320-8d1c0b7e6f5a4d3c.webp"
})))]
pub struct ImageRendition {
    /// Index into `product_images` of the source image.
    pub index: u32,
    /// Width in pixels (as displayed: orientation applied).
    pub width: u32,
    /// Height in pixels.
    pub height: u32,
    /// `jpeg` or `webp`.
    pub format: String,
    /// Size in bytes.
    pub bytes: u64,
    /// Key in the media store, `products/<id>/<index>-<longest side>-<hash>.<ext>`.
    pub path: String,
    /// Where to fetch it: filled in by the HTTP API (under `MEDIA_PUBLIC_URL`, or its own
    /// `/media/`), never stored.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
}

/// A product as stored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(feature = "openapi", schema(example = json!({
    "product_id": 42, "user_id": 1, "product_name": "Desk lamp", "product_description": "Brass, 40 cm",
    "product_images": ["https://images.example.com/lamp-front.jpg", "https://images.example.com/missing.jpg"],
    "product_price": 49.9,
    "compressed_product_images": ["products/42/0-1024-3f2a9c0d4e5b6a71.jpg"],
    "image_renditions": [
        {"index": 0, "width": 1024, "height": 768, "format": "jpeg", "bytes": 148211, "path": "products/42/0-1024-3f2a9c0d4e5b6a71.jpg"},
        {"index": 0, "width": 1024, "height": 768, "format": "webp", "bytes": 102388, "path": "products/42/0-1024-51e0a2b39c4d7f16.webp"},
        {"index": 0, "width": 320, "height": 240, "format": "jpeg", "bytes": 19870, "path": "products/42/0-320-a7c3e1f05b2d4968.jpg"},
        {"index": 0, "width": 320, "height": 240, "format": "webp", "bytes": 14022, "path": "products/42/0-320-8d1c0b7e6f5a4d3c.webp"}
    ],
    "status": "partial", "version": 1,
    "image_errors": [{"index": 1, "url": "https://images.example.com/missing.jpg", "reason": "the image server answered 404 Not Found; check the image URL"}],
    "created_at": "2026-11-25T10:00:00Z", "updated_at": "2026-11-25T10:00:02Z"
})))]
pub struct Product {
    /// Database id.
    pub product_id: i64,
    /// Owner, references `users.id`.
    pub user_id: i64,
    /// 1..=255 characters.
    pub product_name: String,
    /// At most 10 000 characters.
    pub product_description: Option<String>,
    /// Source image URLs, 1..=20.
    pub product_images: Vec<String>,
    /// Exact decimal price, at most 2 decimals; a JSON number on the wire.
    #[serde(with = "rust_decimal::serde::float")]
    pub product_price: Decimal,
    /// Keys of the primary renditions in the media store (the largest JPEG not above the
    /// configured image size, `products/<id>/<index>-<longest side>-<hash>.jpg`). When `status`
    /// is `done`, entry `i` belongs to `product_images[i]`.
    pub compressed_product_images: Vec<String>,
    /// Every stored rendition of every image (sizes and formats), the primary ones included;
    /// empty until the images are processed.
    #[serde(default)]
    pub image_renditions: Vec<ImageRendition>,
    /// Processing status.
    pub status: ProductStatus,
    /// The images that failed, when `status` is `partial` or `failed`.
    pub image_errors: Vec<ImageError>,
    /// 1 on create, +1 per change (update, reprocess). Every event about the product carries
    /// the version it announces; the API's `ETag` is derived from it.
    pub version: i64,
    /// When the row was inserted (UTC).
    pub created_at: DateTime<Utc>,
    /// When the row last changed (UTC).
    pub updated_at: DateTime<Utc>,
}

/// A validated product to insert.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NewProduct {
    /// See [`Product::user_id`].
    pub user_id: i64,
    /// See [`Product::product_name`].
    pub product_name: String,
    /// See [`Product::product_description`].
    pub product_description: Option<String>,
    /// See [`Product::product_images`].
    pub product_images: Vec<String>,
    /// See [`Product::product_price`].
    #[serde(with = "rust_decimal::serde::float")]
    pub product_price: Decimal,
}

/// A change to a product's fields: `None` leaves a field as it is. Validated like
/// [`NewProduct`].
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ProductPatch {
    /// A new [`Product::product_name`].
    pub product_name: Option<String>,
    /// A new [`Product::product_description`]; `Some(None)` removes it.
    pub product_description: Option<Option<String>>,
    /// New [`Product::product_images`]. When they differ from the stored ones, the product goes
    /// back to `pending` and its images are processed again.
    pub product_images: Option<Vec<String>>,
    /// A new [`Product::product_price`].
    #[serde(default, with = "rust_decimal::serde::float_option")]
    pub product_price: Option<Decimal>,
}

/// What a write to an existing product does, for
/// [`ProductRepo::change_product`](super::ProductRepo::change_product).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum ProductChange {
    /// Changes fields; announced on `products.updated` when something changed.
    Update(ProductPatch),
    /// Processes the images again (status `pending`); announced on `products.updated`.
    Reprocess,
    /// Deletes the row; announced on `products.deleted`, whose consumer deletes the stored
    /// images.
    Delete,
}

/// The payload of `products.created`, `products.updated` and `products.deleted`: which product
/// changed, and the version the change produced.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProductEvent {
    /// The product.
    pub product_id: i64,
    /// The version this event announces; absent in events written before versions existed,
    /// which match whatever version the row has.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<i64>,
}

/// The payload of `products.created` (the same as every product event).
pub type ProductCreated = ProductEvent;

/// The payload of `products.processed`, written when the image consumer records a final status:
/// what downstream systems (search index, CDN, storefront cache) need to pick the images up.
///
/// Subscribe to it in a consumer group of your own; delivery is at least once, so apply events
/// keyed by `product_id` and `version`:
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> mq_core::Result<()> {
/// use futures::StreamExt;
/// use mq_core::domain::{ProductProcessed, ProductStatus, PRODUCTS_PROCESSED_TOPIC};
/// use mq_core::{MemoryBroker, Message, Publisher, Subscriber};
///
/// let broker = MemoryBroker::new();
/// let subscriber = broker.subscriber();
/// // Before anything is published (RabbitMQ drops messages for which no queue exists).
/// subscriber.declare(PRODUCTS_PROCESSED_TOPIC, "search-index").await?;
/// # let event = ProductProcessed { product_id: 7, version: 2, status: ProductStatus::Done,
/// #     compressed_product_images: vec!["products/7/0-1024-ab.jpg".into()],
/// #     image_renditions: vec![], image_errors: vec![] };
/// # broker.publisher().publish(PRODUCTS_PROCESSED_TOPIC, Message::json(&event)?).await?;
/// let mut events = subscriber.subscribe(PRODUCTS_PROCESSED_TOPIC, "search-index").await?;
/// if let Some(delivery) = events.next().await {
///     let delivery = delivery?;
///     let event: ProductProcessed = delivery.message().decode()?;
///     assert_eq!((event.product_id, event.version), (7, 2));
///     // ... update the search index, purge the CDN ...
///     delivery.ack().await?;
/// }
/// # Ok(()) }
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProductProcessed {
    /// The product.
    pub product_id: i64,
    /// The version whose images these are.
    pub version: i64,
    /// `done`, `partial` or `failed`.
    pub status: ProductStatus,
    /// The stored keys, as in [`Product::compressed_product_images`].
    pub compressed_product_images: Vec<String>,
    /// Every stored rendition, as in [`Product::image_renditions`] (absent in events written
    /// before renditions existed).
    #[serde(default)]
    pub image_renditions: Vec<ImageRendition>,
    /// The images that failed.
    pub image_errors: Vec<ImageError>,
}

/// What [`ProductRepo::record_result`](super::ProductRepo::record_result) did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Recorded {
    /// The result is the row's now, and `products.processed` was written with it.
    Applied,
    /// The row already held this result for this version; nothing was written.
    Unchanged,
    /// The row's version moved on, or the row was deleted, while the result was made: it was
    /// not recorded. The objects it refers to may be garbage.
    Superseded,
}

/// What the image consumer recorded for a product.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProcessingResult {
    /// Paths of the primary renditions of the images that worked, in the order of
    /// `product_images`.
    pub compressed_product_images: Vec<String>,
    /// Every rendition of the images that worked.
    #[serde(default)]
    pub image_renditions: Vec<ImageRendition>,
    /// The images that failed.
    pub image_errors: Vec<ImageError>,
    /// `done`, `partial` or `failed`, derived from the two lists.
    pub status: ProductStatus,
}

impl ProcessingResult {
    /// A result whose status follows from how many images worked.
    pub fn new(compressed_product_images: Vec<String>, image_errors: Vec<ImageError>) -> Self {
        let status = match (
            compressed_product_images.is_empty(),
            image_errors.is_empty(),
        ) {
            (_, true) => ProductStatus::Done,
            (false, false) => ProductStatus::Partial,
            (true, false) => ProductStatus::Failed,
        };
        Self {
            compressed_product_images,
            image_renditions: Vec::new(),
            image_errors,
            status,
        }
    }

    /// The result with its images' renditions.
    pub fn with_renditions(self, image_renditions: Vec<ImageRendition>) -> Self {
        Self {
            image_renditions,
            ..self
        }
    }

    /// Every media key the result refers to: the objects its product must keep.
    pub fn stored_keys(&self) -> Vec<String> {
        stored_keys(&self.compressed_product_images, &self.image_renditions)
    }
}

impl Product {
    /// Every media key the row refers to: its primary renditions and all the others.
    pub fn stored_keys(&self) -> Vec<String> {
        stored_keys(&self.compressed_product_images, &self.image_renditions)
    }
}

/// The primary keys and the renditions' paths, each once, in that order.
fn stored_keys(primary: &[String], renditions: &[ImageRendition]) -> Vec<String> {
    let mut keys = primary.to_vec();
    for rendition in renditions {
        if !keys.contains(&rendition.path) {
            keys.push(rendition.path.clone());
        }
    }
    keys
}

/// Filters and cursor for listing products. Results are ordered by `product_id` ascending.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ProductFilter {
    /// Only this user's products.
    pub user_id: Option<i64>,
    /// Price at least this.
    pub min_price: Option<Decimal>,
    /// Price at most this.
    pub max_price: Option<Decimal>,
    /// Name contains this text (case-insensitive).
    pub q: Option<String>,
    /// Page size, 1..=100.
    pub limit: u32,
    /// Only products with an id greater than this (the previous page's `next`).
    pub after: Option<i64>,
}

/// One page of a keyset-paginated listing.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Page<T> {
    /// The rows of this page.
    pub items: Vec<T>,
    /// Cursor for the next page, `None` on the last page.
    pub next: Option<i64>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn error(index: u32) -> ImageError {
        ImageError {
            index,
            url: format!("http://127.0.0.1/{index}.jpg"),
            reason: "404".into(),
        }
    }

    #[test]
    fn status_follows_from_the_outcome() {
        assert_eq!(
            ProcessingResult::new(vec!["a".into()], vec![]).status,
            ProductStatus::Done
        );
        assert_eq!(
            ProcessingResult::new(vec!["a".into()], vec![error(1)]).status,
            ProductStatus::Partial
        );
        assert_eq!(
            ProcessingResult::new(vec![], vec![error(0)]).status,
            ProductStatus::Failed
        );
    }

    #[test]
    fn status_round_trips_through_its_name() {
        for status in [
            ProductStatus::Pending,
            ProductStatus::Processing,
            ProductStatus::Done,
            ProductStatus::Partial,
            ProductStatus::Failed,
        ] {
            assert_eq!(status.as_str().parse::<ProductStatus>(), Ok(status));
            assert_eq!(
                serde_json::to_value(status).unwrap(),
                serde_json::json!(status.as_str())
            );
        }
    }

    #[test]
    fn price_is_a_json_number() {
        let new = NewProduct {
            user_id: 1,
            product_name: "n".into(),
            product_description: None,
            product_images: vec![],
            product_price: "9999999999.99".parse().unwrap(),
        };
        let json = serde_json::to_string(&new).unwrap();
        assert!(json.contains("\"product_price\":9999999999.99"), "{json}");
        let back: NewProduct = serde_json::from_str(&json).unwrap();
        assert_eq!(back.product_price.to_string(), "9999999999.99");
    }
}
