//! Pillow's antialiased bilinear resize (`Image.resize(size, BILINEAR)`, what torchvision does
//! to PIL images), reproduced exactly: a triangle filter whose support grows with the
//! downscale factor, coefficients in 22-bit fixed point, a horizontal pass to 8 bits, then a
//! vertical pass (Pillow's `Resample.c`). Generic resizers differ by a level here and there;
//! this does not.

use image::RgbImage;

/// Pillow's `PRECISION_BITS`: 32 − 8 (pixel) − 2 (headroom).
const PRECISION_BITS: u32 = 22;

/// For each output pixel: the first input index and the fixed-point weights from there.
struct Taps {
    first: Vec<usize>,
    weights: Vec<Vec<i32>>,
}

/// Pillow's `precompute_coeffs` + `normalize_coeffs_8bpc` for a bilinear filter.
fn taps(in_size: usize, out_size: usize) -> Taps {
    let scale = in_size as f64 / out_size as f64;
    let filter_scale = scale.max(1.0);
    let support = filter_scale; // the triangle's support is 1, scaled
    let (mut first, mut weights) = (Vec::with_capacity(out_size), Vec::with_capacity(out_size));
    for out in 0..out_size {
        let center = (out as f64 + 0.5) * scale;
        // C's (int) cast truncates toward zero.
        let xmin = ((center - support + 0.5) as i64).max(0) as usize;
        let xmax = ((center + support + 0.5) as i64).min(in_size as i64) as usize;
        let raw: Vec<f64> = (xmin..xmax)
            .map(|x| triangle((x as f64 - center + 0.5) / filter_scale))
            .collect();
        let total: f64 = raw.iter().sum();
        let fixed = raw
            .iter()
            .map(|&w| {
                let w = if total != 0.0 { w / total } else { w };
                let scaled = w * f64::from(1u32 << PRECISION_BITS);
                (if w < 0.0 { scaled - 0.5 } else { scaled + 0.5 }) as i32
            })
            .collect();
        first.push(xmin);
        weights.push(fixed);
    }
    Taps { first, weights }
}

fn triangle(x: f64) -> f64 {
    let x = x.abs();
    if x < 1.0 { 1.0 - x } else { 0.0 }
}

/// Pillow's `clip8`: drop the fixed-point fraction (rounding was added up front), clamp.
fn clip8(sum: i64) -> u8 {
    (sum >> PRECISION_BITS).clamp(0, 255) as u8
}

/// One 8-bit resampling pass along one axis; `get(i, k)` reads input `k` of output line `i`.
fn pass(
    taps: &Taps,
    lines: usize,
    get: impl Fn(usize, usize, usize) -> u8,
    mut put: impl FnMut(usize, usize, [u8; 3]),
) {
    for line in 0..lines {
        for (out, (&first, weights)) in taps.first.iter().zip(&taps.weights).enumerate() {
            let mut sums = [1i64 << (PRECISION_BITS - 1); 3];
            for (k, &w) in weights.iter().enumerate() {
                for (c, sum) in sums.iter_mut().enumerate() {
                    *sum += i64::from(get(line, first + k, c)) * i64::from(w);
                }
            }
            put(line, out, sums.map(clip8));
        }
    }
}

/// Resizes to `width × height` exactly as Pillow's bilinear `resize` does.
pub fn resize_bilinear(image: &RgbImage, width: u32, height: u32) -> RgbImage {
    let (in_w, in_h) = image.dimensions();
    let mut current = image.clone();
    if width != in_w {
        let taps = taps(in_w as usize, width as usize);
        let mut out = RgbImage::new(width, in_h);
        let src = &current;
        pass(
            &taps,
            in_h as usize,
            |y, x, c| src.get_pixel(x as u32, y as u32)[c],
            |y, x, p| out.put_pixel(x as u32, y as u32, image::Rgb(p)),
        );
        current = out;
    }
    if height != in_h {
        let taps = taps(in_h as usize, height as usize);
        let mut out = RgbImage::new(width, height);
        let src = &current;
        pass(
            &taps,
            width as usize,
            |x, y, c| src.get_pixel(x as u32, y as u32)[c],
            |x, y, p| out.put_pixel(x as u32, y as u32, image::Rgb(p)),
        );
        current = out;
    }
    current
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn weights_sum_to_one_in_fixed_point() {
        for (i, o) in [(500, 341), (100, 256), (7, 3), (3, 7)] {
            let t = taps(i, o);
            for w in &t.weights {
                let sum: i64 = w.iter().map(|&v| i64::from(v)).sum();
                assert!(
                    (sum - (1 << PRECISION_BITS)).abs() <= w.len() as i64,
                    "{i}->{o}"
                );
            }
        }
    }

    #[test]
    fn constant_images_stay_constant() {
        let image = RgbImage::from_pixel(37, 23, image::Rgb([10, 128, 255]));
        let resized = resize_bilinear(&image, 256, 101);
        assert!(resized.pixels().all(|p| p.0 == [10, 128, 255]));
    }
}
