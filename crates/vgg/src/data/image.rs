//! Decoding any image users bring (JPEG — with Pillow's decoder, see [`jpeg`] — PNG, WebP,
//! BMP, GIF's first frame; grey, palette and RGBA) to 8-bit RGB, as `PIL.Image.open(p).convert("RGB")` does: alpha is dropped,
//! not composited, and EXIF orientation is ignored, like torchvision.

use std::path::Path;

use image::metadata::Orientation;
use image::{DynamicImage, ImageDecoder, ImageFormat, ImageReader, RgbImage};

use crate::data::jpeg;

use crate::error::{Error, Result};

/// Smallest side we accept: below this an image carries no usable content.
pub const MIN_SIDE: u32 = 8;

/// Decodes `path` by its content (not its extension) to RGB.
pub fn load_rgb(path: &Path) -> Result<RgbImage> {
    let bad = |why: String| Error::BadImage {
        path: path.display().to_string(),
        why,
    };
    let file = crate::io::open_regular(path).map_err(|e| Error::io(path, "cannot open", e))?;
    // The extension's format is the fallback when the content matches none (as
    // `ImageReader::open` does), so a bad PNG says what is wrong with it.
    let mut reader = ImageReader::new(std::io::BufReader::new(file));
    if let Ok(format) = ImageFormat::from_path(path) {
        reader.set_format(format);
    }
    let reader = reader
        .with_guessed_format()
        .map_err(|e| bad(format!("cannot read: {e}")))?;
    let image = match reader.format() {
        None => {
            return Err(bad(
                "not an image (JPEG, PNG, WebP, BMP or GIF expected)".into()
            ));
        }
        Some(ImageFormat::Jpeg) => {
            let mut data = Vec::new();
            let mut file =
                crate::io::open_regular(path).map_err(|e| Error::io(path, "cannot open", e))?;
            std::io::Read::read_to_end(&mut file, &mut data)
                .map_err(|e| Error::io(path, "cannot read", e))?;
            DynamicImage::ImageRgb8(jpeg::decode(&data).map_err(bad)?)
        }
        Some(_) => reader
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
