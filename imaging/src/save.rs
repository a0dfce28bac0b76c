//! Atomic storage under the media directory:
//! `<media>/products/<product_id>/<index>-<short content hash>.<ext>`, written to a temporary
//! file in the same directory, flushed, then renamed. Every path component is built from numbers
//! and a hash — never from the URL — so nothing can land outside the media directory.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use crate::config::OutputFormat;
use crate::error::ImagingError;

/// Length of the content hash in file names (hex digits of SHA-256).
pub const HASH_LEN: usize = 16;

/// The media directory.
#[derive(Debug, Clone)]
pub struct MediaStore {
    root: PathBuf,
}

fn storage_error(path: &Path, source: std::io::Error) -> ImagingError {
    ImagingError::Storage {
        path: path.display().to_string(),
        source,
    }
}

/// `products/<product_id>/<index>-<hash>.<ext>` for `data` (with `/` separators).
pub fn relative_path(product_id: i64, index: u32, data: &[u8], format: OutputFormat) -> String {
    let digest = Sha256::digest(data);
    let hex: String = digest
        .iter()
        .take(HASH_LEN / 2)
        .map(|b| format!("{b:02x}"))
        .collect();
    format!("products/{product_id}/{index}-{hex}.{}", format.extension())
}

impl MediaStore {
    /// A store rooted at `root` (created on first save if missing).
    pub fn new(root: impl Into<PathBuf>) -> MediaStore {
        MediaStore { root: root.into() }
    }

    /// The media directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Writes `data` atomically and returns its path relative to the media directory.
    /// Re-saving the same bytes for the same product and index yields the same path.
    pub fn save(
        &self,
        product_id: i64,
        index: u32,
        data: &[u8],
        format: OutputFormat,
    ) -> Result<String, ImagingError> {
        let relative = relative_path(product_id, index, data, format);
        let target = self.root.join(&relative);
        let dir = target.parent().expect("relative path has a directory");
        fs::create_dir_all(dir).map_err(|e| storage_error(dir, e))?;

        let mut tmp = tempfile::Builder::new()
            .prefix(".tmp-")
            .suffix(".part")
            .tempfile_in(dir)
            .map_err(|e| storage_error(dir, e))?;
        tmp.write_all(data)
            .map_err(|e| storage_error(tmp.path(), e))?;
        tmp.as_file()
            .sync_all()
            .map_err(|e| storage_error(tmp.path(), e))?;
        // On error the temporary file is removed when `tmp` drops.
        tmp.persist(&target)
            .map_err(|e| storage_error(&target, e.error))?;
        // Make the rename durable too (best effort: not every platform syncs directories).
        if let Ok(d) = fs::File::open(dir) {
            let _ = d.sync_all();
        }
        Ok(relative)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deterministic_names_and_atomic_write() {
        let dir = tempfile::tempdir().unwrap();
        let store = MediaStore::new(dir.path());
        let a = store.save(42, 3, b"hello", OutputFormat::Jpeg).unwrap();
        let b = store.save(42, 3, b"hello", OutputFormat::Jpeg).unwrap();
        assert_eq!(a, b);
        assert!(a.starts_with("products/42/3-"), "{a}");
        assert!(a.ends_with(".jpg"));
        assert_eq!(a.len(), "products/42/3-".len() + HASH_LEN + 4);
        assert_eq!(fs::read(dir.path().join(&a)).unwrap(), b"hello");
        let entries: Vec<_> = fs::read_dir(dir.path().join("products/42"))
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(entries.len(), 1, "no temp files left: {entries:?}");
        let c = store.save(42, 3, b"other", OutputFormat::WebP).unwrap();
        assert_ne!(a, c);
        assert!(c.ends_with(".webp"));
    }
}
