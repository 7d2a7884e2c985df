//! JPEG decoding with libjpeg-turbo's decoder (through `mozjpeg`), the library Pillow uses:
//! its integer IDCT and fancy upsampling give bit-identical pixels, where other decoders
//! differ by up to a few levels.

use std::panic::{AssertUnwindSafe, catch_unwind};

use image::RgbImage;

/// Decodes a JPEG to RGB, or says why not. Truncated files are errors, as in Pillow
/// (libjpeg would quietly pad them with grey).
pub fn decode(data: &[u8]) -> Result<RgbImage, String> {
    if is_truncated(data) {
        return Err("truncated JPEG: the image data ends before its end marker".into());
    }
    // libjpeg reports fatal errors by unwinding out of the decoder (mozjpeg's design).
    catch_unwind(AssertUnwindSafe(|| decode_unchecked(data))).unwrap_or_else(|cause| {
        let message = cause
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| cause.downcast_ref::<&str>().map(|s| s.to_string()));
        Err(message.unwrap_or_else(|| "corrupt JPEG".into()))
    })
}

fn decode_unchecked(data: &[u8]) -> Result<RgbImage, String> {
    use mozjpeg::ColorSpace::{JCS_CMYK, JCS_YCCK};
    let fail = |e: std::io::Error| e.to_string();
    let decompress = mozjpeg::Decompress::new_mem(data).map_err(fail)?;
    let (width, height) = (decompress.width() as u32, decompress.height() as u32);
    let raw: Vec<u8> = if matches!(decompress.color_space(), JCS_CMYK | JCS_YCCK) {
        let mut decoder = decompress.to_colorspace(JCS_CMYK).map_err(fail)?;
        let pixels: Vec<[u8; 4]> = decoder.read_scanlines().map_err(fail)?;
        decoder.finish().map_err(fail)?;
        pixels.into_iter().flat_map(inverted_cmyk_to_rgb).collect()
    } else {
        let mut decoder = decompress.rgb().map_err(fail)?;
        let pixels: Vec<[u8; 3]> = decoder.read_scanlines().map_err(fail)?;
        decoder.finish().map_err(fail)?;
        pixels.into_iter().flatten().collect()
    };
    RgbImage::from_raw(width, height, raw).ok_or_else(|| "corrupt JPEG: short image data".into())
}

/// A CMYK JPEG's pixel as Pillow converts it: the samples are stored inverted (Adobe's
/// convention, which Pillow assumes for every CMYK JPEG: raw mode `CMYK;I`), then
/// `R = (255 − K) − C·(255 − K)/255` with its rounding, and likewise for G and B.
fn inverted_cmyk_to_rgb(stored: [u8; 4]) -> [u8; 3] {
    let [c, m, y, k] = stored.map(|v| 255 - u32::from(v));
    let white = 255 - k;
    let mul_div_255 = |a: u32, b: u32| {
        let t = a * b + 128;
        ((t >> 8) + t) >> 8
    };
    [c, m, y].map(|v| (white - mul_div_255(v, white)) as u8)
}

/// A complete JPEG has an end-of-image marker (FF D9) after its last start-of-scan (FF DA);
/// inside entropy-coded data FF is always stuffed, so the pair cannot occur by accident.
/// (An EXIF thumbnail's own EOI comes before the main scans and does not count.)
fn is_truncated(data: &[u8]) -> bool {
    let last = |marker: u8| data.windows(2).rposition(|w| w == [0xFF, marker]);
    match (last(0xDA), last(0xD9)) {
        (Some(scan), Some(end)) => end < scan,
        (Some(_), None) => true,
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn garbage_and_truncation_are_errors() {
        assert!(decode(b"\xff\xd8\xff\xe0garbage garbage").is_err());
        assert!(decode(b"").is_err());
        assert!(is_truncated(b"\xff\xd8\xff\xda\x00\x01"));
        assert!(!is_truncated(b"\xff\xd8\xff\xda\x00\x01\xff\xd9"));
    }
}
