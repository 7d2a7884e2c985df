//! Decoding any image users bring (JPEG — with Pillow's decoder, see [`jpeg`] — PNG, WebP,
//! BMP, GIF's first frame; grey, palette and RGBA) to 8-bit RGB, as `PIL.Image.open(p).convert("RGB")` does: alpha is dropped,
//! not composited, and EXIF orientation is ignored, like torchvision.

use std::path::Path;

use image::metadata::Orientation;
use image::{DynamicImage, ImageDecoder, ImageFormat, ImageReader, RgbImage};

use crate::data::jpeg;

use crate::error::{Error, Result};

/// Most pixels an image may have, checked against its header before decoding: Pillow's
/// `MAX_IMAGE_PIXELS` (above it Pillow warns, at twice it refuses), so anything Pillow opens
/// without complaint we open too.
pub const MAX_PIXELS: u64 = 89_478_485;

/// Smallest side we accept: below this an image carries no usable content.
pub const MIN_SIDE: u32 = 8;

/// Decodes `path` by its content (not its extension) to RGB.
pub fn load_rgb(path: &Path) -> Result<RgbImage> {
    let bad = |why: String| Error::BadImage {
        path: path.display().to_string(),
        why,
    };
    let mut reader = open_reader(path)?;
    // The decoder's own cap (512 MiB by default) would refuse what the budget below allows.
    let mut limits = image::Limits::default();
    limits.max_alloc = Some(crate::limits::memory_budget());
    reader.limits(limits);
    let Some(format) = reader.format() else {
        return Err(bad(
            "not an image (JPEG, PNG, WebP, BMP or GIF expected)".into()
        ));
    };
    // The header's size, before anything is decoded: a few bytes can claim gigapixels.
    let (width, height) = open_reader(path)?
        .into_dimensions()
        .map_err(|e| bad(format!("cannot read: {e}")))?;
    let pixels = u64::from(width) * u64::from(height);
    if pixels > MAX_PIXELS {
        return Err(bad(format!(
            "{width}×{height} pixels is over the limit of {MAX_PIXELS} (Pillow's \
             MAX_IMAGE_PIXELS); refused before decoding"
        )));
    }
    // The decoded image and its RGB conversion.
    crate::limits::reserve(Some(pixels * 4 * 2), || {
        format!("decoding {} ({width}×{height} pixels)", path.display())
    })?;
    let image = match format {
        ImageFormat::Jpeg => {
            let data = crate::io::read_regular(path, 1)?;
            DynamicImage::ImageRgb8(jpeg::decode(&data).map_err(bad)?)
        }
        _ => reader
            .decode()
            .map_err(|e| bad(format!("cannot decode: {e}")))?,
    };
    if image.width() < MIN_SIDE || image.height() < MIN_SIDE {
        return Err(bad(format!(
            "{}×{} pixels is too small to classify (at least {MIN_SIDE}×{MIN_SIDE})",
            image.width(),
            image.height()
        )));
    }
    Ok(image.into_rgb8())
}

/// A reader of `path` (a regular file) with its format guessed from the content, the
/// extension's being the fallback (as `ImageReader::open` does), so that a broken PNG says
/// what is wrong with it.
fn open_reader(path: &Path) -> Result<ImageReader<std::io::BufReader<std::fs::File>>> {
    let file = crate::io::open_regular(path).map_err(|e| Error::io(path, "cannot open", e))?;
    let mut reader = ImageReader::new(std::io::BufReader::new(file));
    if let Ok(format) = ImageFormat::from_path(path) {
        reader.set_format(format);
    }
    reader
        .with_guessed_format()
        .map_err(|e| Error::io(path, "cannot read", e))
}

/// Turns `image` (decoded from `path`) upright as its EXIF orientation tag says: cameras
/// store portrait photos sideways. torchvision does not do this, so it is opt-in
/// (`--exif-orientation`); images without the tag are returned unchanged.
pub fn apply_exif_orientation(path: &Path, image: RgbImage) -> RgbImage {
    let orientation = ImageReader::open(path)
        .ok()
        .and_then(|r| r.with_guessed_format().ok())
        .and_then(|r| r.into_decoder().ok())
        .and_then(|mut d| d.orientation().ok())
        .unwrap_or(Orientation::NoTransforms);
    if orientation == Orientation::NoTransforms {
        return image;
    }
    let mut upright = DynamicImage::ImageRgb8(image);
    upright.apply_orientation(orientation);
    upright.into_rgb8()
}
