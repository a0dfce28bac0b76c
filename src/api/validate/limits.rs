//! The limits of the HTTP contract's fields.

use rust_decimal::Decimal;

/// Most characters in a user name.
pub const MAX_USER_NAME: usize = 100;
/// Most characters in a product name.
pub const MAX_PRODUCT_NAME: usize = 255;
/// Most characters in a product description.
pub const MAX_DESCRIPTION: usize = 10_000;
/// Most images per product.
pub const MAX_IMAGES: usize = 20;
/// Most characters in an image URL.
pub const MAX_URL: usize = 2048;
/// Largest price `numeric(12,2)` holds.
pub const MAX_PRICE: Decimal = Decimal::from_parts(3_567_587_327, 232, 0, false, 2); // 9999999999.99
/// Default and largest page size of `GET /products`.
pub const DEFAULT_PAGE: u32 = 20;
/// Largest page size of `GET /products`.
pub const MAX_PAGE: u32 = 100;
