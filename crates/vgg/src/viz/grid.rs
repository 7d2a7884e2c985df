//! Pictures of tensors: feature maps as a grid of grey tiles, first-layer filters as RGB
//! tiles, a Grad-CAM heatmap over the input, and PNG encoding. Every tile is stretched to
//! [0, 255] on its own: channels differ in scale by orders of magnitude, and a shared scale
//! would leave most of them black.

use std::io::Cursor;

use candle_core::Tensor;
use image::{DynamicImage, GrayImage, ImageFormat, Rgb, RgbImage};

use crate::error::{Error, Result};

/// Most channels shown per feature-map grid.
pub const MAX_CHANNELS: usize = 64;
/// Feature-map tiles are enlarged (nearest neighbour) until their shorter side reaches this.
const MIN_TILE_SIDE: usize = 32;
/// Each 3×3 filter becomes a 24×24 tile.
const FILTER_SCALE: usize = 8;
/// Pixels between tiles (drawn white).
const GAP: usize = 2;

/// Up to [`MAX_CHANNELS`] channels of a `[1, C, H, W]` (or `[C, H, W]`) activation, most
/// active first (by mean), each stretched to [0, 255], in a near-square grid.
pub fn feature_grid(activation: &Tensor) -> Result<GrayImage> {
    let activation = match activation.rank() {
        4 => activation.squeeze(0)?,
        _ => activation.clone(),
    };
    let (channels, h, w) = activation.dims3()?;
    let values = activation.flatten_all()?.to_vec1::<f32>()?;
    let planes: Vec<&[f32]> = values.chunks(h * w).collect();
    let means: Vec<f32> = planes
        .iter()
        .map(|p| p.iter().sum::<f32>() / p.len() as f32)
        .collect();
    let mut order: Vec<usize> = (0..channels).collect();
    order.sort_by(|&a, &b| means[b].total_cmp(&means[a]).then(a.cmp(&b)));
    order.truncate(MAX_CHANNELS);
    let scale = MIN_TILE_SIDE.div_ceil(h.min(w)).max(1);
    let tiles: Vec<Vec<u8>> = order.iter().map(|&c| stretch(planes[c])).collect();
    let grid = Grid::new(tiles.len(), h * scale, w * scale);
    let mut image = GrayImage::from_pixel(grid.width, grid.height, image::Luma([255]));
    for (i, tile) in tiles.iter().enumerate() {
        grid.paint(i, scale, w, |x, y, pixel| {
            image.put_pixel(x, y, image::Luma([tile[pixel]]))
        });
    }
    Ok(image)
}

/// The first convolution's filters (`[K, 3, 3, 3]`) as RGB tiles, each stretched to
/// [0, 255] over its 27 weights and enlarged 8× (nearest), in a near-square grid.
pub fn filter_grid(weight: &Tensor) -> Result<RgbImage> {
    let (count, channels, kh, kw) = weight.dims4()?;
    if channels != 3 {
        return Err(Error::BadArgument(format!(
            "filters can be drawn as RGB for a 3-channel input, this one has {channels}"
        )));
    }
    let values = weight.flatten_all()?.to_vec1::<f32>()?;
    let plane = kh * kw;
    let grid = Grid::new(count, kh * FILTER_SCALE, kw * FILTER_SCALE);
    let mut image = RgbImage::from_pixel(grid.width, grid.height, Rgb([255, 255, 255]));
    for (i, filter) in values.chunks(channels * plane).enumerate() {
        let tile = stretch(filter);
        grid.paint(i, FILTER_SCALE, kw, |x, y, pixel| {
            let rgb = [0, 1, 2].map(|c| tile[c * plane + pixel]);
            image.put_pixel(x, y, Rgb(rgb))
        });
    }
    Ok(image)
}

/// `heat` (one value in [0, 1] per pixel, row-major) as a jet colormap, blended at 50% over
/// `image`.
pub fn overlay(image: &RgbImage, heat: &[f32]) -> RgbImage {
    let mut out = image.clone();
    for (pixel, &h) in out.pixels_mut().zip(heat) {
        let colour = jet(h);
        for c in 0..3 {
            pixel[c] = ((f32::from(pixel[c]) + colour[c]) / 2.0).round() as u8;
        }
    }
    out
}

/// The classic jet colormap: blue (0) through cyan, yellow, to red (1), in 0–255 units.
fn jet(t: f32) -> [f32; 3] {
    let band = |centre: f32| (1.5 - (4.0 * t - centre).abs()).clamp(0.0, 1.0) * 255.0;
    [band(3.0), band(2.0), band(1.0)]
}

/// The image as PNG bytes.
pub fn png(image: impl Into<DynamicImage>) -> Result<Vec<u8>> {
    let mut bytes = Cursor::new(Vec::new());
    image
        .into()
        .write_to(&mut bytes, ImageFormat::Png)
        .map_err(|e| Error::BadArgument(format!("cannot encode a PNG: {e}")))?;
    Ok(bytes.into_inner())
}

/// Values stretched linearly so the smallest is 0 and the largest 255 (all 0 when flat).
fn stretch(values: &[f32]) -> Vec<u8> {
    let (lo, hi) = values
        .iter()
        .fold((f32::INFINITY, f32::NEG_INFINITY), |(lo, hi), &v| {
            (lo.min(v), hi.max(v))
        });
    let range = hi - lo;
    values
        .iter()
        .map(|&v| {
            if range > 0.0 {
                ((v - lo) / range * 255.0).round() as u8
            } else {
                0
            }
        })
        .collect()
}

/// A near-square layout of equal tiles separated by [`GAP`] pixels.
struct Grid {
    columns: usize,
    tile_h: usize,
    tile_w: usize,
    width: u32,
    height: u32,
}

impl Grid {
    fn new(tiles: usize, tile_h: usize, tile_w: usize) -> Self {
        let columns = (tiles as f64).sqrt().ceil().max(1.0) as usize;
        let rows = tiles.div_ceil(columns).max(1);
        let span = |n: usize, tile: usize| (n * tile + (n + 1) * GAP) as u32;
        Grid {
            columns,
            tile_h,
            tile_w,
            width: span(columns, tile_w),
            height: span(rows, tile_h),
        }
    }

    /// Calls `put(x, y, source_pixel)` for every pixel of tile `index`, where the source is
    /// `source_w` wide and enlarged `scale` times.
    fn paint(
        &self,
        index: usize,
        scale: usize,
        source_w: usize,
        mut put: impl FnMut(u32, u32, usize),
    ) {
        let left = GAP + (index % self.columns) * (self.tile_w + GAP);
        let top = GAP + (index / self.columns) * (self.tile_h + GAP);
        for y in 0..self.tile_h {
            for x in 0..self.tile_w {
                let pixel = (y / scale) * source_w + x / scale;
                put((left + x) as u32, (top + y) as u32, pixel);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    #[test]
    fn channels_are_ordered_by_mean_and_stretched() -> Result<()> {
        // Channel 1 has the larger mean, so it is the first tile.
        let x = Tensor::from_vec(vec![0.0f32, 1.0, 5.0, 7.0], (1, 2, 1, 2), &Device::Cpu)?;
        let grid = feature_grid(&x)?;
        let scale = MIN_TILE_SIDE as u32;
        assert_eq!(grid.width(), 2 * (2 * scale) + 3 * GAP as u32);
        let first = |dx: u32| grid.get_pixel(GAP as u32 + dx, GAP as u32)[0];
        assert_eq!((first(0), first(2 * scale - 1)), (0, 255));
        Ok(())
    }

    #[test]
    fn jet_ends() {
        assert_eq!(jet(0.0), [0.0, 0.0, 127.5]);
        assert_eq!(jet(1.0), [127.5, 0.0, 0.0]);
    }
}
