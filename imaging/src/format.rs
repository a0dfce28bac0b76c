//! Image format detection from magic bytes (never from the URL or `Content-Type`).

/// A supported input format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SourceFormat {
    /// JPEG (`FF D8 FF`).
    Jpeg,
    /// PNG (`89 50 4E 47 0D 0A 1A 0A`).
    Png,
    /// WebP (`RIFF....WEBP`).
    WebP,
    /// GIF (`GIF87a` / `GIF89a`).
    Gif,
}

impl SourceFormat {
    /// Lowercase name.
    pub fn name(self) -> &'static str {
        match self {
            SourceFormat::Jpeg => "jpeg",
            SourceFormat::Png => "png",
            SourceFormat::WebP => "webp",
            SourceFormat::Gif => "gif",
        }
    }
}

/// Detects the format from the first bytes; the error text says what was seen instead.
pub fn sniff(bytes: &[u8]) -> Result<SourceFormat, String> {
    if bytes.starts_with(&[0xFF, 0xD8, 0xFF]) {
        return Ok(SourceFormat::Jpeg);
    }
    if bytes.starts_with(b"\x89PNG\r\n\x1a\n") {
        return Ok(SourceFormat::Png);
    }
    if bytes.len() >= 12 && &bytes[0..4] == b"RIFF" && &bytes[8..12] == b"WEBP" {
        return Ok(SourceFormat::WebP);
    }
    if bytes.starts_with(b"GIF87a") || bytes.starts_with(b"GIF89a") {
        return Ok(SourceFormat::Gif);
    }
    Err(describe_unknown(bytes))
}

fn describe_unknown(bytes: &[u8]) -> String {
    if bytes.is_empty() {
        return "the response was empty".into();
    }
    let head = &bytes[..bytes.len().min(512)];
    let text = String::from_utf8_lossy(head).to_ascii_lowercase();
    let trimmed = text.trim_start();
    if trimmed.starts_with("<!doctype html") || trimmed.starts_with("<html") {
        return "got an HTML page".into();
    }
    if trimmed.starts_with("<svg") || (trimmed.starts_with("<?xml") && text.contains("<svg")) {
        return "SVG is not supported".into();
    }
    if bytes.len() >= 12 && &bytes[4..8] == b"ftyp" {
        return "HEIC/AVIF/MP4 is not supported".into();
    }
    if bytes.starts_with(b"BM") {
        return "BMP is not supported".into();
    }
    if bytes.starts_with(b"II*\0") || bytes.starts_with(b"MM\0*") {
        return "TIFF is not supported".into();
    }
    if bytes.starts_with(b"%PDF") {
        return "got a PDF".into();
    }
    "unrecognised data".into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sniffs_magic() {
        assert_eq!(sniff(&[0xFF, 0xD8, 0xFF, 0xE0]), Ok(SourceFormat::Jpeg));
        assert_eq!(sniff(b"\x89PNG\r\n\x1a\n...."), Ok(SourceFormat::Png));
        assert_eq!(sniff(b"RIFF\0\0\0\0WEBPVP8 "), Ok(SourceFormat::WebP));
        assert_eq!(sniff(b"GIF89a...."), Ok(SourceFormat::Gif));
        assert_eq!(
            sniff(b"<!DOCTYPE html><html>").unwrap_err(),
            "got an HTML page"
        );
        assert_eq!(sniff(b"").unwrap_err(), "the response was empty");
        assert!(sniff(b"hello").is_err());
    }
}
