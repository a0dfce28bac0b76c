//! [`ImagingConfig`]: every limit and knob of the crate, with defaults that are safe on a bare machine.

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::Duration;

use crate::error::ImagingError;

/// Resampling filter used when shrinking.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ResizeFilter {
    /// Lanczos, 3 lobes: the sharpest, the default.
    #[default]
    Lanczos3,
    /// Catmull-Rom bicubic: a little softer and a little faster.
    CatmullRom,
}

/// Output encoding.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub enum OutputFormat {
    /// JPEG (`.jpg`): baseline 4:2:0 with optimized Huffman tables, or progressive
    /// ([`ImagingConfig::jpeg_progressive`]).
    #[default]
    Jpeg,
    /// Lossy WebP (`.webp`) through libwebp; needs the crate feature `webp` (on by default).
    WebP,
    /// AVIF (`.avif`) through rav1e (`ravif`); needs the crate feature `avif`. Much slower to
    /// encode than the others (see [`ImagingConfig::avif_speed`]).
    Avif,
}

impl OutputFormat {
    /// Every format, in the order renditions list them.
    pub const ALL: [OutputFormat; 3] = [OutputFormat::Jpeg, OutputFormat::WebP, OutputFormat::Avif];

    /// File extension used for stored files, without the dot.
    pub fn extension(self) -> &'static str {
        match self {
            OutputFormat::Jpeg => "jpg",
            OutputFormat::WebP => "webp",
            OutputFormat::Avif => "avif",
        }
    }

    /// The name used in settings (`IMAGE_FORMATS`) and in a product's renditions: `jpeg`,
    /// `webp`, `avif`.
    pub fn name(self) -> &'static str {
        match self {
            OutputFormat::Jpeg => "jpeg",
            OutputFormat::WebP => "webp",
            OutputFormat::Avif => "avif",
        }
    }

    /// Why this build cannot encode the format, for errors that name the setting.
    pub fn not_built_in(self) -> String {
        format!("{self} output needs the `{self}` feature of the product-pipeline-imaging crate")
    }

    /// Whether this build can encode the format (WebP needs the feature `webp`, AVIF `avif`).
    pub fn is_available(self) -> bool {
        match self {
            OutputFormat::Jpeg => true,
            OutputFormat::WebP => cfg!(feature = "webp"),
            OutputFormat::Avif => cfg!(feature = "avif"),
        }
    }
}

impl std::fmt::Display for OutputFormat {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for OutputFormat {
    type Err = String;

    /// Parses a [`name`](OutputFormat::name) (case-insensitive; `jpg` is taken for `jpeg`).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "jpeg" | "jpg" => Ok(OutputFormat::Jpeg),
            "webp" => Ok(OutputFormat::WebP),
            "avif" => Ok(OutputFormat::Avif),
            other => Err(format!(
                "unknown image format `{other}`; the formats are jpeg, webp and avif"
            )),
        }
    }
}

/// The default renditions: longest sides of 320 (thumbnails, listings) and 1024 pixels.
pub const DEFAULT_RENDITIONS: [u32; 2] = [320, 1024];

/// The default output formats: JPEG, and WebP when the feature `webp` is built in. (AVIF is
/// never a default: it costs many times the CPU of the others.)
pub fn default_formats() -> Vec<OutputFormat> {
    [OutputFormat::Jpeg, OutputFormat::WebP]
        .into_iter()
        .filter(|format| format.is_available())
        .collect()
}

/// Limits and settings of the fetch → decode → compress → save pipeline.
///
/// `Default` gives the values of the design: 25 MiB downloads, 5 s connect and 20 s total
/// timeouts, a 60 s fetch budget per image, at least 10 KiB/s after the first 5 s, 5 redirects,
/// private addresses refused, 50 MP / 16384 px decode limits, output that fits inside 1024×1024
/// at JPEG quality 80, renditions of 320 and 1024 pixels in JPEG and WebP, a 512 MiB memory
/// budget.
#[derive(Debug, Clone)]
pub struct ImagingConfig {
    /// Largest accepted download in bytes (checked against `Content-Length` and while streaming).
    pub max_bytes: u64,
    /// Time allowed to establish a TCP (+TLS) connection.
    pub connect_timeout: Duration,
    /// Time allowed for one download attempt: connect, redirects, headers and body.
    pub total_timeout: Duration,
    /// Time all download attempts of one image may take together, counted by
    /// [`Imaging::process`](crate::Imaging::process) across the calls for that image: the attempt
    /// that uses up the rest fails permanently ([`ImagingError::FetchBudgetSpent`]).
    pub fetch_budget: Duration,
    /// Bytes per second a download must average once `transfer_grace` has passed; slower ones
    /// fail with [`ImagingError::TooSlow`] (transient). 0 = no minimum.
    pub min_transfer_rate: u64,
    /// Time at the start of a download before `min_transfer_rate` counts; the response headers
    /// must arrive within it (when a minimum rate is set).
    pub transfer_grace: Duration,
    /// Most redirects followed for one image.
    pub max_redirects: usize,
    /// Allow loopback, private, link-local and other non-public addresses. Off by default
    /// (server-side request forgery protection); tests and closed networks turn it on.
    pub allow_private_hosts: bool,
    /// Host names (as written in the URL, lowercase) that may resolve to non-public addresses even
    /// when `allow_private_hosts` is off, e.g. an internal image CDN.
    pub private_host_allowlist: Vec<String>,
    /// Fixed name → addresses table consulted before DNS (like `/etc/hosts`). The addresses are
    /// still checked like DNS answers. Mostly useful for tests.
    pub static_hosts: HashMap<String, Vec<IpAddr>>,
    /// `User-Agent` sent with every request.
    pub user_agent: String,
    /// Largest decoded image in pixels (width × height).
    pub max_pixels: u64,
    /// Largest accepted width or height in pixels.
    pub max_side: u32,
    /// Most memory one decode may allocate, in bytes (`image::Limits::max_alloc`).
    pub max_decode_alloc: u64,
    /// The primary rendition, the one a product's `compressed_product_images` names, is the
    /// largest of `renditions` not above `target_size` (in JPEG).
    pub target_size: u32,
    /// Longest sides of the renditions made of every image (`IMAGE_RENDITIONS`), each fitting
    /// inside that many pixels square and never upscaled: a size larger than the source gives
    /// the source size, once. At least one must be at most `target_size`.
    pub renditions: Vec<u32>,
    /// Formats every rendition is written in (`IMAGE_FORMATS`); must include JPEG, the format
    /// of the primary rendition.
    pub formats: Vec<OutputFormat>,
    /// JPEG quality, 1..=100.
    pub jpeg_quality: u8,
    /// Progressive JPEGs instead of baseline ones (default `false`: baseline 4:2:0, optimized
    /// Huffman tables).
    pub jpeg_progressive: bool,
    /// Resampling filter.
    pub filter: ResizeFilter,
    /// WebP quality, 1..=100.
    pub webp_quality: u8,
    /// AVIF quality, 1..=100 (`ravif`'s scale: 60 looks about like JPEG 80 at half its size).
    pub avif_quality: u8,
    /// AVIF encoder speed, 1 (slowest, smallest) ..= 10 (fastest). At the default 8 a 1024 px
    /// rendition and its 320 px one take about 0.56 s of one core, over four times their JPEG and
    /// WebP together, for 0.64× the bytes of the WebPs (docs/BENCHMARKS.md).
    pub avif_speed: u8,
    /// Most images decoded/compressed at once; `None` = number of cores.
    pub max_concurrent_jobs: Option<usize>,
    /// Bytes that downloads and decode buffers of all images in flight may hold together (half
    /// each, see [`MemoryBudget`](crate::budget::MemoryBudget)); `None` = unbounded. At least
    /// twice `max_bytes`, so that the largest download fits. With a budget,
    /// [`Imaging::new`](crate::Imaging::new) has glibc return freed blocks to the kernel at
    /// once ([`return_freed_buffers_to_the_kernel`](crate::budget::return_freed_buffers_to_the_kernel)).
    pub memory_budget: Option<u64>,
}

impl Default for ImagingConfig {
    fn default() -> Self {
        ImagingConfig {
            max_bytes: 25 * 1024 * 1024,
            connect_timeout: Duration::from_secs(5),
            total_timeout: Duration::from_secs(20),
            fetch_budget: Duration::from_secs(60),
            min_transfer_rate: 10 * 1024,
            transfer_grace: Duration::from_secs(5),
            max_redirects: 5,
            allow_private_hosts: false,
            private_host_allowlist: Vec::new(),
            static_hosts: HashMap::new(),
            user_agent: concat!("product-pipeline-imaging/", env!("CARGO_PKG_VERSION")).into(),
            max_pixels: 50_000_000,
            max_side: 16_384,
            max_decode_alloc: 512 * 1024 * 1024,
            target_size: 1024,
            renditions: DEFAULT_RENDITIONS.to_vec(),
            formats: default_formats(),
            jpeg_quality: 80,
            jpeg_progressive: false,
            filter: ResizeFilter::Lanczos3,
            webp_quality: 80,
            avif_quality: 60,
            avif_speed: 8,
            max_concurrent_jobs: None,
            memory_budget: Some(512 * 1024 * 1024),
        }
    }
}

impl ImagingConfig {
    /// Number of CPU jobs allowed at once.
    pub fn jobs(&self) -> usize {
        self.max_concurrent_jobs
            .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
            .max(1)
    }

    /// Checks every setting; the error names the setting that is wrong.
    pub fn validate(&self) -> Result<(), ImagingError> {
        fn bad(setting: &'static str, reason: impl Into<String>) -> Result<(), ImagingError> {
            Err(ImagingError::Config {
                setting,
                reason: reason.into(),
            })
        }
        if self.max_bytes == 0 {
            return bad("max_bytes", "must be greater than 0");
        }
        if self.connect_timeout.is_zero() {
            return bad("connect_timeout", "must be greater than 0");
        }
        if self.total_timeout.is_zero() || self.total_timeout > Duration::from_secs(24 * 60 * 60) {
            return bad(
                "total_timeout",
                "must be greater than 0 and at most 24 hours",
            );
        }
        if self.fetch_budget.is_zero() {
            return bad("fetch_budget", "must be greater than 0");
        }
        if self.min_transfer_rate > 0 && self.transfer_grace.is_zero() {
            return bad(
                "transfer_grace",
                "must be greater than 0 when a minimum transfer rate is set (the response \
                 headers must arrive within it)",
            );
        }
        if self.max_redirects > 20 {
            return bad("max_redirects", "must be at most 20");
        }
        if self.max_pixels == 0 || self.max_side == 0 {
            return bad("max_pixels/max_side", "must be greater than 0");
        }
        if self.target_size == 0 || self.target_size > self.max_side {
            return bad("target_size", "must be between 1 and max_side");
        }
        if !(1..=100).contains(&self.jpeg_quality) {
            return bad("jpeg_quality", "must be between 1 and 100");
        }
        if !(1..=100).contains(&self.webp_quality) {
            return bad("webp_quality", "must be between 1 and 100");
        }
        if !(1..=100).contains(&self.avif_quality) {
            return bad("avif_quality", "must be between 1 and 100");
        }
        if !(1..=10).contains(&self.avif_speed) {
            return bad("avif_speed", "must be between 1 and 10");
        }
        if self.renditions.is_empty() || self.renditions.contains(&0) {
            return bad("renditions", "must list at least one size, each above 0");
        }
        if let Some(size) = self.renditions.iter().find(|&&size| size > self.max_side) {
            return bad(
                "renditions",
                format!(
                    "{size} is above the largest side accepted ({})",
                    self.max_side
                ),
            );
        }
        if !self.renditions.iter().any(|&size| size <= self.target_size) {
            return bad(
                "renditions",
                format!(
                    "none is at most the primary size {} (IMAGE_SIZE); add a size up to it or \
                     raise it",
                    self.target_size
                ),
            );
        }
        if !self.formats.contains(&OutputFormat::Jpeg) {
            return bad(
                "formats",
                "must include jpeg, the format of the primary rendition",
            );
        }
        if let Some(format) = self.formats.iter().find(|format| !format.is_available()) {
            return bad("formats", format.not_built_in());
        }
        if self.max_concurrent_jobs == Some(0) {
            return bad("max_concurrent_jobs", "must be at least 1");
        }
        if let Some(budget) = self.memory_budget {
            if budget / 2 < self.max_bytes {
                return bad(
                    "memory_budget",
                    format!(
                        "{budget} bytes leave {} for downloads, less than one download of the \
                         image size limit ({} bytes); raise the budget to at least {} or lower \
                         the limit",
                        budget / 2,
                        self.max_bytes,
                        self.max_bytes.saturating_mul(2)
                    ),
                );
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refused(config: ImagingConfig) -> &'static str {
        match config.validate() {
            Err(ImagingError::Config { setting, .. }) => setting,
            other => panic!("expected a refused setting, got {other:?}"),
        }
    }

    #[test]
    fn the_defaults_are_valid() {
        ImagingConfig::default().validate().unwrap();
    }

    /// Renditions and formats: a primary JPEG must exist, and only built-in formats are taken.
    #[test]
    fn renditions_and_formats_are_checked() {
        for renditions in [vec![], vec![0, 320], vec![2048], vec![320, 20_000]] {
            let config = ImagingConfig {
                renditions,
                ..ImagingConfig::default()
            };
            assert_eq!(refused(config), "renditions");
        }
        let without_jpeg = ImagingConfig {
            formats: vec![OutputFormat::WebP],
            ..ImagingConfig::default()
        };
        assert_eq!(refused(without_jpeg), "formats");
        assert_eq!("JPG".parse::<OutputFormat>().unwrap(), OutputFormat::Jpeg);
        assert!("gif"
            .parse::<OutputFormat>()
            .unwrap_err()
            .contains("jpeg, webp and avif"));
        assert!(!default_formats().contains(&OutputFormat::Avif));
        for format in OutputFormat::ALL {
            assert_eq!(format.name().parse::<OutputFormat>().unwrap(), format);
        }
    }

    /// The fetch limits the attempt's clock relies on: a deadline it can compute without
    /// overflowing, a budget to draw on, a grace period for the headers when a rate is set.
    #[test]
    fn fetch_limits_are_checked() {
        let too_long = ImagingConfig {
            total_timeout: Duration::from_secs(24 * 60 * 60 + 1),
            ..ImagingConfig::default()
        };
        assert_eq!(refused(too_long), "total_timeout");
        let no_budget = ImagingConfig {
            fetch_budget: Duration::ZERO,
            ..ImagingConfig::default()
        };
        assert_eq!(refused(no_budget), "fetch_budget");
        let no_grace = ImagingConfig {
            transfer_grace: Duration::ZERO,
            ..ImagingConfig::default()
        };
        assert_eq!(refused(no_grace), "transfer_grace");
        ImagingConfig {
            transfer_grace: Duration::ZERO,
            min_transfer_rate: 0,
            ..ImagingConfig::default()
        }
        .validate()
        .expect("no grace is needed without a minimum rate");
    }
}
