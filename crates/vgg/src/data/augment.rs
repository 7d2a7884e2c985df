//! Training-time augmentation, as torchvision's transforms: `RandomResizedCrop` +
//! `RandomHorizontalFlip` for ImageNet-style photos, `RandomCrop(padding=4)` + flip for
//! 32×32 data (the CIFAR recipe), and the VGG paper's scale jittering (§3.1). Each image draws from its own generator, seeded from the
//! run's seed, the epoch and its position, so results do not depend on thread scheduling
//! and a resumed run sees the same crops as an uninterrupted one.

use image::{RgbImage, imageops};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::data::preprocess::{Preprocess, center_crop, resize_shorter_side};
use crate::data::resize::resize_bilinear;
use crate::error::{Error, Result};

/// How a training image becomes a `size × size` crop.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Augment {
    /// `RandomResizedCrop(size, scale, ratio=(3/4, 4/3))`, then a random horizontal flip
    /// when `flip`.
    ResizedCrop { scale: (f64, f64), flip: bool },
    /// Fit to `size × size` (resize the shorter side, center crop), zero-pad by `padding`,
    /// take a random `size × size` window, then a random horizontal flip when `flip`.
    PadCrop { padding: u32, flip: bool },
    /// The VGG paper's training scales (§3.1): the shorter side resized to a random `S` in
    /// `min..=max` (fixed-scale training when they are equal), a random `size × size` crop,
    /// then a random horizontal flip when `flip`.
    ScaleCrop { min: usize, max: usize, flip: bool },
    /// The evaluation transform: resize and center crop, no randomness.
    None,
}

impl Augment {
    /// `auto`: pad-crop for small images (≤ 64 pixels, CIFAR-like), resized-crop otherwise.
    /// Flips suit photos, not digits or text: `flip` turns them off.
    pub fn parse(name: &str, size: usize, flip: bool) -> Result<Self> {
        let (pad_crop, resized_crop) = (
            Augment::PadCrop { padding: 4, flip },
            Augment::ResizedCrop {
                scale: (0.08, 1.0),
                flip,
            },
        );
        Ok(match name {
            "auto" if size <= 64 => pad_crop,
            "auto" | "resized-crop" => resized_crop,
            "pad-crop" => pad_crop,
            "none" => Augment::None,
            other => {
                return Err(Error::BadArgument(format!(
                    "unknown augmentation `{other}`; valid: auto, resized-crop, pad-crop, none"
                )));
            }
        })
    }

    /// The augmented, normalised CHW tensor of `image` at `preprocess.crop` pixels.
    pub fn apply(
        &self,
        image: &RgbImage,
        preprocess: &Preprocess,
        rng: &mut StdRng,
    ) -> Result<Vec<f32>> {
        let size = preprocess.crop;
        let (crop, flip) = match *self {
            Augment::ResizedCrop { scale, flip } => {
                let (x, y, w, h) = resized_crop_box(image.width(), image.height(), scale, rng);
                let region = imageops::crop_imm(image, x, y, w, h).to_image();
                (resize_bilinear(&region, size as u32, size as u32), flip)
            }
            Augment::PadCrop { padding, flip } => {
                let fitted = center_crop(&resize_shorter_side(image, size)?, size);
                (pad_crop(&fitted, padding, rng), flip)
            }
            Augment::ScaleCrop { min, max, flip } => {
                let scale = rng.random_range(min..=max);
                let resized = resize_shorter_side(image, scale)?;
                let (left, top) = random_window(resized.width(), resized.height(), size, rng);
                let side = size as u32;
                (
                    imageops::crop_imm(&resized, left, top, side, side).to_image(),
                    flip,
                )
            }
            Augment::None => return preprocess.apply(image),
        };
        let crop = if flip && rng.random_bool(0.5) {
            imageops::flip_horizontal(&crop)
        } else {
            crop
        };
        Ok(preprocess.normalise(&crop))
    }
}

/// The generator for the image at `position` of `epoch`'s order.
pub fn image_rng(seed: u64, epoch: usize, position: usize) -> StdRng {
    StdRng::seed_from_u64(
        seed ^ (epoch as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15)
            ^ (position as u64).wrapping_mul(0xD1B5_4A32_D192_ED03),
    )
}

/// torchvision's `RandomResizedCrop.get_params`: ten tries at a box of random area (a
/// `scale` fraction) and log-uniform aspect ratio in [3/4, 4/3], else the whole image
/// clamped to that ratio range, centered. Returns `(left, top, width, height)`.
fn resized_crop_box(
    width: u32,
    height: u32,
    scale: (f64, f64),
    rng: &mut StdRng,
) -> (u32, u32, u32, u32) {
    let (w_f, h_f) = (f64::from(width), f64::from(height));
    let area = w_f * h_f;
    let ratio: (f64, f64) = (3.0 / 4.0, 4.0 / 3.0);
    let log_ratio = (ratio.0.ln(), ratio.1.ln());
    for _ in 0..10 {
        let target = area * rng.random_range(scale.0..=scale.1);
        let aspect = rng.random_range(log_ratio.0..=log_ratio.1).exp();
        let w = (target * aspect).sqrt().round() as u32;
        let h = (target / aspect).sqrt().round() as u32;
        if 0 < w && w <= width && 0 < h && h <= height {
            let top = rng.random_range(0..=height - h);
            let left = rng.random_range(0..=width - w);
            return (left, top, w, h);
        }
    }
    let in_ratio = w_f / h_f;
    let (w, h) = if in_ratio < ratio.0 {
        (width, (w_f / ratio.0).round() as u32)
    } else if in_ratio > ratio.1 {
        ((h_f * ratio.1).round() as u32, height)
    } else {
        (width, height)
    };
    ((width - w) / 2, (height - h) / 2, w, h)
}

/// The top-left corner of a uniformly random `size × size` window of a `width × height`
/// image that holds one (the scales are at least the crop, so the resized image does).
fn random_window(width: u32, height: u32, size: usize, rng: &mut StdRng) -> (u32, u32) {
    let size = size as u32;
    let left = rng.random_range(0..=width.saturating_sub(size));
    let top = rng.random_range(0..=height.saturating_sub(size));
    (left, top)
}

/// A random `W × H` window of the image zero-padded by `padding` on every side.
fn pad_crop(image: &RgbImage, padding: u32, rng: &mut StdRng) -> RgbImage {
    let (w, h) = image.dimensions();
    let dx = rng.random_range(0..=2 * padding) as i64 - i64::from(padding);
    let dy = rng.random_range(0..=2 * padding) as i64 - i64::from(padding);
    RgbImage::from_fn(w, h, |x, y| {
        let (sx, sy) = (i64::from(x) + dx, i64::from(y) + dy);
        if (0..i64::from(w)).contains(&sx) && (0..i64::from(h)).contains(&sy) {
            *image.get_pixel(sx as u32, sy as u32)
        } else {
            image::Rgb([0, 0, 0])
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gradient(w: u32, h: u32) -> RgbImage {
        RgbImage::from_fn(w, h, |x, y| image::Rgb([x as u8, y as u8, (x + y) as u8]))
    }

    #[test]
    fn resized_crop_boxes_stay_inside_with_torchvision_proportions() {
        let mut rng = StdRng::seed_from_u64(1);
        for _ in 0..500 {
            let (x, y, w, h) = resized_crop_box(200, 120, (0.08, 1.0), &mut rng);
            assert!(x + w <= 200 && y + h <= 120 && w > 0 && h > 0);
            let area = f64::from(w * h) / (200.0 * 120.0);
            let ratio = f64::from(w) / f64::from(h);
            assert!((0.07..=1.0).contains(&area), "area fraction {area}");
            assert!((0.70..=1.45).contains(&ratio), "aspect {ratio}");
        }
        // A 10:1 strip never fits a 4/3 box of ≥ 8% area the long way: the fallback is
        // the centered 4:3 box of full height.
        let mut rng = StdRng::seed_from_u64(2);
        assert_eq!(
            resized_crop_box(1000, 10, (0.9, 1.0), &mut rng),
            (493, 0, 13, 10)
        );
    }

    #[test]
    fn pad_crop_shifts_by_at_most_the_padding_and_fills_zeros() {
        let image = gradient(32, 32);
        let mut shifts = std::collections::BTreeSet::new();
        for seed in 0..1000 {
            let out = pad_crop(&image, 4, &mut StdRng::seed_from_u64(seed));
            let centre = out.get_pixel(16, 16).0;
            let (dx, dy) = (i64::from(centre[0]) - 16, i64::from(centre[1]) - 16);
            assert!(dx.abs() <= 4 && dy.abs() <= 4);
            if dx > 0 {
                assert_eq!(out.get_pixel(31, 16).0, [0, 0, 0]);
            }
            shifts.insert((dx, dy));
        }
        assert_eq!(shifts.len(), 81, "every shift in [-4, 4]² occurs");
    }

    /// Each jittered scale lies in the range, every scale occurs, and the crop is a window
    /// of the image resized to it (a vertical gradient shows which rows it came from).
    #[test]
    fn scale_jitter_draws_every_scale_in_range() {
        let image = RgbImage::from_fn(40, 30, |_, y| image::Rgb([(y * 8) as u8, 0, 0]));
        let preprocess = Preprocess {
            crop: 16,
            resize: 16,
            mean: [0.0; 3],
            std: [1.0; 3],
            ..Preprocess::imagenet()
        };
        let augment = Augment::ScaleCrop {
            min: 16,
            max: 24,
            flip: false,
        };
        let mut seen = std::collections::BTreeSet::new();
        for seed in 0..400 {
            let mut rng = StdRng::seed_from_u64(seed);
            let scale = StdRng::seed_from_u64(seed).random_range(16..=24usize);
            seen.insert(scale);
            let tensor = augment.apply(&image, &preprocess, &mut rng).unwrap();
            assert_eq!(tensor.len(), 3 * 16 * 16);
            let resized = resize_shorter_side(&image, scale).unwrap();
            let red = |t: &[f32], y: usize| t[y * 16];
            let top = (0..=resized.height() - 16).find(|&top| {
                (0..16).all(|y| {
                    let want = f32::from(resized.get_pixel(0, top + y as u32)[0]) / 255.0;
                    (red(&tensor, y) - want).abs() < 1e-6
                })
            });
            assert!(
                top.is_some(),
                "seed {seed}: the crop is a window of the {scale}-scaled image"
            );
        }
        assert_eq!(seen, (16..=24).collect(), "every scale in the range occurs");
    }

    #[test]
    fn same_seed_epoch_and_position_give_the_same_tensor() {
        let image = gradient(64, 48);
        let preprocess = Preprocess {
            crop: 32,
            resize: 32,
            ..Preprocess::imagenet()
        };
        let augment = Augment::ResizedCrop {
            scale: (0.08, 1.0),
            flip: true,
        };
        let run = |epoch, position| {
            augment
                .apply(&image, &preprocess, &mut image_rng(7, epoch, position))
                .unwrap()
        };
        assert_eq!(run(3, 5), run(3, 5));
        assert_ne!(run(3, 5), run(4, 5));
        assert_eq!(run(0, 0).len(), 3 * 32 * 32);
    }
}
