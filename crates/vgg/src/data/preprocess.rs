//! torchvision's `ImageClassification` preprocessing: resize the shorter side (bilinear with
//! antialiasing, as PIL does it), center-crop, scale to [0, 1], normalise per channel.

use image::RgbImage;

use std::path::Path;

use crate::data::image::{apply_exif_orientation, load_rgb};
use crate::data::resize::resize_bilinear;
use crate::error::{Error, Result};
use crate::limits::{array_bytes, reserve, too_large};

/// ImageNet statistics used by every torchvision classification checkpoint.
pub const IMAGENET_MEAN: [f32; 3] = [0.485, 0.456, 0.406];
pub const IMAGENET_STD: [f32; 3] = [0.229, 0.224, 0.225];

/// How an image becomes a network input.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Preprocess {
    /// Target length of the shorter side.
    pub resize: usize,
    /// Side of the square center crop.
    pub crop: usize,
    /// Per-channel mean and std, in [0, 1] units.
    pub mean: [f32; 3],
    pub std: [f32; 3],
    /// Turn photos upright by their EXIF orientation before anything else (not torchvision's
    /// behaviour, hence off by default).
    pub exif_orientation: bool,
}

impl Preprocess {
    /// torchvision's `ImageClassification(crop_size=224)`: 256, 224, ImageNet statistics.
    pub fn imagenet() -> Self {
        Preprocess {
            resize: 256,
            crop: 224,
            mean: IMAGENET_MEAN,
            std: IMAGENET_STD,
            exif_orientation: false,
        }
    }

    /// Caffe-style input for `vgg16_features` weights: 0–255 RGB minus (123, 117, 104)
    /// (torchvision writes it as mean (0.48235, 0.45882, 0.40784), std 1/255).
    pub fn caffe() -> Self {
        Preprocess {
            mean: [0.48235, 0.45882, 0.40784],
            std: [1.0 / 255.0; 3],
            ..Preprocess::imagenet()
        }
    }

    /// A preset by name: `imagenet` or `caffe`.
    pub fn preset(name: &str) -> Result<Self> {
        match name {
            "imagenet" => Ok(Preprocess::imagenet()),
            "caffe" => Ok(Preprocess::caffe()),
            other => Err(Error::BadArgument(format!(
                "unknown preset `{other}`; valid: imagenet, caffe"
            ))),
        }
    }

    pub fn validate(&self) -> Result<()> {
        if self.resize == 0 || self.crop == 0 {
            return Err(Error::BadArgument(
                "--resize and --crop must be at least 1".into(),
            ));
        }
        if self.mean.iter().any(|m| !m.is_finite()) {
            return Err(Error::BadArgument("--mean values must be finite".into()));
        }
        if self.std.iter().any(|&s| !(s.is_finite() && s > 0.0)) {
            return Err(Error::BadArgument(
                "--std values must be positive and finite".into(),
            ));
        }
        self.check_range()?;
        let crop = self.crop;
        reserve(array_bytes(&[3, crop, crop], 4), || {
            format!("--crop {crop}: one {crop}x{crop} image")
        })
    }

    /// Refuses a mean and std that take a pixel in [0, 1] beyond float32's range, where
    /// `(x − mean) / std` would be ±infinity.
    fn check_range(&self) -> Result<()> {
        for c in 0..3 {
            let (mean, std) = (self.mean[c], self.std[c]);
            let widest = (mean.abs() + 1.0) / std;
            if !widest.is_finite() {
                return Err(Error::BadArgument(format!(
                    "--mean {mean:e} and --std {std:e} take channel {c}'s values (x − mean) / \
                     std, x in [0, 1], beyond float32's range"
                )));
            }
        }
        Ok(())
    }

    /// The resized and cropped 8-bit image, before scaling (what PIL holds at that point).
    pub fn resize_and_crop(&self, image: &RgbImage) -> Result<RgbImage> {
        let resized = resize_shorter_side(image, self.resize)?;
        Ok(center_crop(&resized, self.crop))
    }

    /// Decodes an image to RGB, upright if `exif_orientation` is set.
    pub fn load(&self, path: &Path) -> Result<RgbImage> {
        let image = load_rgb(path)?;
        Ok(if self.exif_orientation {
            apply_exif_orientation(path, image)
        } else {
            image
        })
    }

    /// The CHW float tensor the model sees, flattened.
    pub fn apply(&self, image: &RgbImage) -> Result<Vec<f32>> {
        Ok(self.normalise(&self.resize_and_crop(image)?))
    }

    /// Every image's CHW tensor, the memory for all of them reserved first: a long list
    /// of small images is refused with the memory it would take, not left to the allocator.
    pub fn apply_all(&self, images: &[RgbImage]) -> Result<Vec<Vec<f32>>> {
        self.reserve_batch(images.len())?;
        images.iter().map(|image| self.apply(image)).collect()
    }

    /// Refuses `count` preprocessed images held at once when they would not fit the memory
    /// budget.
    pub fn reserve_batch(&self, count: usize) -> Result<()> {
        let crop = self.crop;
        reserve(array_bytes(&[count, 3, crop, crop], 4), || {
            format!("{count} images preprocessed at {crop}x{crop}")
        })
    }

    /// Scale to [0, 1], normalise, and lay out as CHW.
    pub fn normalise(&self, image: &RgbImage) -> Vec<f32> {
        let plane = image.width() as usize * image.height() as usize;
        let mut out = vec![0.0f32; 3 * plane];
        for (i, pixel) in image.pixels().enumerate() {
            for c in 0..3 {
                let value = f32::from(pixel[c]) / 255.0;
                out[c * plane + i] = (value - self.mean[c]) / self.std[c];
            }
        }
        out
    }

    /// The inverse of [`Preprocess::normalise`]: a CHW tensor of `size × size` back to the
    /// 8-bit RGB image it came from (exactly, for a tensor that `normalise` produced).
    pub fn denormalise(&self, chw: &[f32], size: u32) -> RgbImage {
        let plane = size as usize * size as usize;
        RgbImage::from_fn(size, size, |x, y| {
            let i = y as usize * size as usize + x as usize;
            image::Rgb([0, 1, 2].map(|c| {
                let value = chw[c * plane + i] * self.std[c] + self.mean[c];
                (value * 255.0).round().clamp(0.0, 255.0) as u8
            }))
        })
    }
}

/// The `(width, height)` a `w×h` image (neither 0) takes when its shorter side is resized
/// to `target`, the longer one scaled and rounded down, as torchvision's `Resize(int)`;
/// `None` on overflow.
pub fn shorter_side_size(w: usize, h: usize, target: usize) -> Option<(usize, usize)> {
    let scaled = |long: usize, short: usize| Some(target.checked_mul(long)? / short);
    if w <= h {
        Some((target, scaled(h, w)?))
    } else {
        Some((scaled(w, h)?, target))
    }
}

/// Resize so the shorter side is `target`, the longer `int(target · long / short)`, with
/// PIL's antialiased bilinear filter.
pub fn resize_shorter_side(image: &RgbImage, target: usize) -> Result<RgbImage> {
    let (w, h) = (image.width() as usize, image.height() as usize);
    if w == 0 || h == 0 {
        return Err(Error::BadArgument("the image has no pixels".into()));
    }
    let what = || format!("--resize {target}: resizing a {w}x{h} image");
    let (new_w, new_h) = shorter_side_size(w, h, target).ok_or_else(|| too_large(what()))?;
    if (new_w, new_h) == (w, h) {
        return Ok(image.clone());
    }
    // The two passes' outputs: the resized image and the horizontal pass before it.
    reserve(array_bytes(&[2, 3, new_w.max(w), new_h.max(h)], 1), what)?;
    let new_w = u32::try_from(new_w).map_err(|_| too_large(what()))?;
    let new_h = u32::try_from(new_h).map_err(|_| too_large(what()))?;
    Ok(resize_bilinear(image, new_w, new_h))
}

/// torchvision's `center_crop`: top = round((H − crop) / 2) with Python's half-to-even
/// rounding; an image smaller than the crop is zero-padded first, as torchvision does.
pub fn center_crop(image: &RgbImage, crop: usize) -> RgbImage {
    let (w, h) = (image.width() as i64, image.height() as i64);
    let crop = crop as i64;
    let offset = |size: i64| -> i64 {
        if size >= crop {
            round_half_even((size - crop) as f64 / 2.0)
        } else {
            -((crop - size) / 2)
        }
    };
    let (left, top) = (offset(w), offset(h));
    RgbImage::from_fn(crop as u32, crop as u32, |x, y| {
        let (sx, sy) = (left + x as i64, top + y as i64);
        if (0..w).contains(&sx) && (0..h).contains(&sy) {
            *image.get_pixel(sx as u32, sy as u32)
        } else {
            image::Rgb([0, 0, 0])
        }
    })
}

fn round_half_even(v: f64) -> i64 {
    let r = v.round();
    if (v - v.trunc()).abs() == 0.5 && r % 2.0 != 0.0 {
        (r - v.signum()) as i64
    } else {
        r as i64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn denormalise_inverts_normalise() {
        let image = RgbImage::from_fn(4, 4, |x, y| image::Rgb([x as u8 * 60, y as u8 * 70, 255]));
        for preprocess in [Preprocess::imagenet(), Preprocess::caffe()] {
            assert_eq!(
                preprocess.denormalise(&preprocess.normalise(&image), 4),
                image
            );
        }
    }

    #[test]
    fn python_rounding() {
        assert_eq!(round_half_even(0.5), 0);
        assert_eq!(round_half_even(1.5), 2);
        assert_eq!(round_half_even(2.5), 2);
        assert_eq!(round_half_even(16.0), 16);
    }

    #[test]
    fn shorter_side_and_truncation() {
        let image = RgbImage::new(500, 375);
        let resized = resize_shorter_side(&image, 256).unwrap();
        assert_eq!((resized.width(), resized.height()), (341, 256));
        let image = RgbImage::new(240, 321);
        let resized = resize_shorter_side(&image, 256).unwrap();
        assert_eq!((resized.width(), resized.height()), (256, 342));
    }

    #[test]
    fn crop_pads_small_images_like_torchvision() {
        let image = RgbImage::from_pixel(3, 2, image::Rgb([9, 9, 9]));
        let cropped = center_crop(&image, 4);
        // torchvision pads left (4−3)//2 = 0, top (4−2)//2 = 1.
        assert_eq!(cropped.get_pixel(0, 0)[0], 0);
        assert_eq!(cropped.get_pixel(0, 1)[0], 9);
        assert_eq!(cropped.get_pixel(2, 2)[0], 9);
        assert_eq!(cropped.get_pixel(3, 1)[0], 0);
        assert_eq!(cropped.get_pixel(0, 3)[0], 0);
    }
}
