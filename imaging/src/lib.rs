//! Product images: SSRF-safe fetch, fast compression, and the media store they are kept in.
//!
//! The service layer calls [`Imaging::process`]; the lower-level pieces are public modules so
//! benches and tools can use them alone:
//!
//! - [`fetch`]: HTTP(S) download with address checks at connect time, redirect, size and time
//!   limits ([`address`] decides which IPs are public);
//! - [`format`](mod@format), [`decode`], [`jpeg`], [`png`], [`pixels`], [`resize`], [`colour`],
//!   [`encode`], [`compress`](mod@compress): sniff, decode once with limits (JPEG DCT-scaled by
//!   libjpeg-turbo, a progressive one without the scans that scale does not need:
//!   [`progressive`]; PNG rows made opaque 8-bit as they are decoded), then for each rendition
//!   SIMD resize, convert to sRGB, orient, encode (JPEG, WebP, AVIF);
//! - [`budget`]: the memory budget that bounds downloaded bytes and decode buffers in flight;
//! - [`media`]: the media store over object_store (local directory, memory, S3, GCS, Azure),
//!   with deterministic content-hashed keys.
//!
//! ```no_run
//! # async fn run() -> Result<(), product_pipeline_imaging::ImagingError> {
//! use product_pipeline_imaging::{media::MediaStore, Imaging, ImagingConfig};
//! let media = MediaStore::from_url("./media")?;
//! let imaging = Imaging::new(ImagingConfig::default(), media)?;
//! let stored = imaging.process(42, 0, "https://example.com/photo.jpg").await?;
//! println!("primary {} {}x{}", stored.key, stored.width, stored.height);
//! for rendition in &stored.renditions {
//!     println!("{} {} {}x{}", rendition.key, rendition.format, rendition.width, rendition.height);
//! }
//! # Ok(()) }
//! ```
#![warn(missing_docs)]

pub mod address;
pub mod budget;
mod buffer;
pub mod colour;
pub mod compress;
mod config;
pub mod decode;
pub mod encode;
mod error;
pub mod fetch;
pub mod format;
pub mod jpeg;
mod libjpeg;
pub mod media;
pub mod pixels;
pub mod png;
pub mod progressive;
pub mod resize;
mod service;
#[cfg(any(test, feature = "testkit"))]
pub mod test_images;

pub use compress::{compress, CompressOptions, Compressed, Rendition};
pub use config::{default_formats, ImagingConfig, OutputFormat, ResizeFilter, DEFAULT_RENDITIONS};
pub use error::ImagingError;
/// The object_store crate the [`media`] store is built on (for [`media::MediaStore::from_object_store`]).
pub use object_store;
pub use service::{Imaging, StoredImage, StoredRendition};
