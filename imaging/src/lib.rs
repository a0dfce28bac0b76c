//! Product images: SSRF-safe fetch, fast compression and atomic storage.
//!
//! The service layer calls [`Imaging::process`]; the lower-level pieces are public modules so
//! benches and tools can use them alone:
//!
//! - [`fetch`]: HTTP(S) download with address checks at connect time, redirect, size and time
//!   limits ([`address`] decides which IPs are public);
//! - [`format`](mod@format), [`decode`], [`jpeg`], [`pixels`], [`resize`], [`encode`], [`compress`](mod@compress): sniff,
//!   decode with limits (JPEG DCT-scaled by libjpeg-turbo), SIMD resize, orient, encode;
//! - [`save`]: atomic writes under the media directory with deterministic names.
//!
//! ```no_run
//! # async fn run() -> Result<(), imaging::ImagingError> {
//! use imaging::{Imaging, ImagingConfig};
//! let imaging = Imaging::new(ImagingConfig::default(), "./media")?;
//! let stored = imaging.process(42, 0, "https://example.com/photo.jpg").await?;
//! println!("{} {}x{}", stored.relative_path, stored.width, stored.height);
//! # Ok(()) }
//! ```
#![warn(missing_docs)]

pub mod address;
pub mod compress;
mod config;
pub mod decode;
pub mod encode;
mod error;
pub mod fetch;
pub mod format;
pub mod jpeg;
pub mod pixels;
pub mod resize;
pub mod save;
mod service;

pub use compress::{compress, CompressOptions, Compressed};
pub use config::{ImagingConfig, OutputFormat, ResizeFilter};
pub use error::ImagingError;
pub use service::{Imaging, StoredImage};
