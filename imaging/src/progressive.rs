//! Progressive JPEGs decoded at a reduced scale without the scans that barely change the
//! result.
//!
//! A progressive JPEG holds its coefficients in scans: first coarse bands and high bits, then
//! refinements. libjpeg-turbo must entropy-decode every scan before it can apply its DCT
//! scaling, so a ¼-scale decode costs about as much as a full one, and most of that time goes
//! to the last scans, which only add the lowest bit of the AC coefficients. This module copies
//! the file without those scans (marker structure only; the entropy-coded data of the kept
//! scans is copied byte for byte) and the decoder reads what remains:
//!
//! - at ⅛ scale libjpeg-turbo's IDCT uses the DC coefficient alone, so every AC scan goes (a
//!   4:4:4 or gray image then decodes exactly as the whole file does; a subsampled one differs
//!   a little, as libjpeg-turbo decodes its chroma at ¼ to spare the upsampling);
//! - at ¼ and ½ scale the final AC refinement scans (successive approximation down to bit 0)
//!   go: each AC coefficient then misses its lowest bit;
//! - at full scale nothing is dropped.
//!
//! Against the full decode at the same scale this stays above PSNR 44 dB on the real
//! progressive photos of `plasma-workspace-wallpapers` and 45 dB on generated ones
//! (`tests/progressive.rs`, which fails below 40 dB), while the final refinements are more than
//! half of those files' bytes.
//!
//! The reduced file is decoded with block smoothing off (`crate::libjpeg`): libjpeg-turbo would
//! otherwise estimate the missing bits of the first AC coefficients from neighbouring DC values,
//! at about 15 % of the decode's time, and on the real photos the result is no closer to the
//! whole file's decode for it.
//!
//! A file whose structure is not understood, or that has nothing to drop, is decoded as it is.

use turbojpeg::ScalingFactor;

/// One scan: where its SOS segment and entropy-coded data lie, and what it codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Scan {
    /// Offset of the SOS marker.
    start: usize,
    /// Offset just past the scan's entropy-coded data (the next marker).
    end: usize,
    /// Start of spectral selection: 0 for a DC scan.
    ss: u8,
    /// Successive approximation, high bit position (0 on a first scan).
    ah: u8,
    /// Successive approximation, low bit position.
    al: u8,
}

impl Scan {
    /// Whether the decode at `scale` can do without this scan.
    fn droppable_at(&self, scale: ScalingFactor) -> bool {
        let ac = self.ss > 0;
        if scale == ScalingFactor::ONE_EIGHTH {
            ac
        } else if scale == ScalingFactor::ONE_QUARTER || scale == ScalingFactor::ONE_HALF {
            // The last refinement of AC bands: no later scan builds on it.
            ac && self.ah > 0 && self.al == 0
        } else {
            false
        }
    }
}

/// `jpeg` without the scans a decode at `scale` can do without, or `None` to decode it as it
/// is: not progressive, a structure this parser does not follow, or nothing to drop.
pub fn without_unneeded_scans(jpeg: &[u8], scale: ScalingFactor) -> Option<Vec<u8>> {
    let scans = scans(jpeg)?;
    let dropped: Vec<&Scan> = scans.iter().filter(|s| s.droppable_at(scale)).collect();
    if dropped.is_empty() {
        return None;
    }
    let mut out = Vec::with_capacity(jpeg.len());
    let mut at = 0;
    for scan in dropped {
        out.extend_from_slice(&jpeg[at..scan.start]);
        at = scan.end;
    }
    out.extend_from_slice(&jpeg[at..]);
    Some(out)
}

/// The scans of a progressive JPEG, in file order; `None` when it is not one or its marker
/// structure is not understood (the caller then decodes the file as it is).
fn scans(jpeg: &[u8]) -> Option<Vec<Scan>> {
    if !jpeg.starts_with(&[0xFF, 0xD8]) {
        return None;
    }
    let mut scans = Vec::new();
    let mut progressive = false;
    let mut pos = 2;
    loop {
        // Fill bytes before a marker.
        while jpeg.get(pos) == Some(&0xFF) && jpeg.get(pos + 1) == Some(&0xFF) {
            pos += 1;
        }
        if jpeg.get(pos) != Some(&0xFF) {
            return None;
        }
        let marker = *jpeg.get(pos + 1)?;
        match marker {
            0xD9 => break,                     // EOI
            0xD0..=0xD7 | 0x01 => return None, // a stray RST or TEM outside a scan
            _ => {}
        }
        let length = usize::from(u16::from_be_bytes([
            *jpeg.get(pos + 2)?,
            *jpeg.get(pos + 3)?,
        ]));
        let payload = jpeg.get(pos + 4..pos + 2 + length)?;
        match marker {
            0xC2 => progressive = true,
            // Other frame types (baseline, extended, lossless, arithmetic, hierarchical).
            0xC0 | 0xC1 | 0xC3 | 0xC5..=0xC7 | 0xC9..=0xCB | 0xCD..=0xCF => return None,
            _ => {}
        }
        if marker != 0xDA {
            pos += 2 + length;
            continue;
        }
        // SOS: Ns, Ns × (component, tables), Ss, Se, Ah/Al.
        let components = usize::from(*payload.first()?);
        let tail = payload.get(1 + 2 * components..1 + 2 * components + 3)?;
        let data_start = pos + 2 + length;
        let end = entropy_data_end(jpeg, data_start)?;
        scans.push(Scan {
            start: pos,
            end,
            ss: tail[0],
            ah: tail[2] >> 4,
            al: tail[2] & 0x0F,
        });
        pos = end;
    }
    progressive.then_some(scans)
}

/// The offset of the marker that ends entropy-coded data starting at `from`: the first `FF`
/// not followed by a stuffed `00` or a restart marker.
fn entropy_data_end(jpeg: &[u8], from: usize) -> Option<usize> {
    let mut pos = from;
    loop {
        let next = pos + jpeg[pos..].iter().position(|&b| b == 0xFF)?;
        match jpeg.get(next + 1)? {
            0x00 | 0xD0..=0xD7 | 0xFF => pos = next + 1,
            _ => return Some(next),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pixels::Pixels;

    fn progressive_jpeg(width: u32, height: u32) -> Vec<u8> {
        let pixels: Pixels = crate::test_images::photo(width, height);
        crate::jpeg::encode_with(&pixels, 90, true).unwrap()
    }

    #[test]
    fn finds_the_scans_of_libjpegs_progressive_script() {
        let jpeg = progressive_jpeg(64, 48);
        let scans = scans(&jpeg).expect("a progressive JPEG");
        // libjpeg's default script for YCbCr: 10 scans, DC first.
        assert_eq!(scans.len(), 10, "{scans:?}");
        assert_eq!(scans[0].ss, 0);
        assert!(scans.iter().any(|s| s.ss > 0 && s.ah > 0 && s.al == 0));
        let baseline = crate::jpeg::encode(&crate::test_images::photo(64, 48), 90).unwrap();
        assert_eq!(
            super::scans(&baseline),
            None,
            "baseline JPEGs are left alone"
        );
    }

    #[test]
    fn drops_nothing_at_full_scale_and_every_ac_scan_at_an_eighth() {
        let jpeg = progressive_jpeg(64, 48);
        assert_eq!(without_unneeded_scans(&jpeg, ScalingFactor::ONE), None);
        let dc_only = without_unneeded_scans(&jpeg, ScalingFactor::ONE_EIGHTH).unwrap();
        let kept = scans(&dc_only).unwrap();
        assert!(kept.iter().all(|s| s.ss == 0), "{kept:?}");
        assert!(dc_only.ends_with(&[0xFF, 0xD9]));
    }
}
