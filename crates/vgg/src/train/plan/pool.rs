//! Pooling on NHWC activations: 2×2 stride-2 max-pool with PyTorch's gradient (all of it
//! to the first maximum of each window in row-major order; odd sizes floor), and the
//! adaptive average pool with the flatten that follows it (into PyTorch's `(c, h, w)`
//! feature order).

use rayon::prelude::*;

use super::Nhwc;
use crate::engine::adaptive_bin;

/// `out = max_pool(src)` (`s` in, `s.pooled()` out); `winners` gets each window's winning
/// cell (0‥3, row-major).
pub(super) fn max_pool(src: &[f32], s: Nhwc, out: &mut [f32], winners: &mut [u8]) {
    let o = s.pooled();
    let row = o.w * s.c;
    if row == 0 {
        return;
    }
    out.par_chunks_mut(row)
        .zip(winners.par_chunks_mut(row))
        .enumerate()
        .for_each(|(r, (out, winners))| {
            let (img, i) = (r / o.h, r % o.h);
            let top = (img * s.h + 2 * i) * s.w;
            let outs = out.chunks_exact_mut(s.c).zip(winners.chunks_exact_mut(s.c));
            for (j, (out, winners)) in outs.enumerate() {
                let [a, b, c, d] = window(top, 2 * j, s.w).map(|p| &src[p * s.c..][..s.c]);
                let cells = a.iter().zip(b).zip(c.iter().zip(d));
                for ((o, w), ((&a, &b), (&c, &d))) in out.iter_mut().zip(winners).zip(cells) {
                    (*o, *w) = first_max(a, b, c, d);
                }
            }
        });
}

/// The largest of a window's cells and which it is, the first on ties and the last NaN
/// (PyTorch's rule: `val > max || isnan(val)`).
#[inline(always)]
fn first_max(a: f32, b: f32, c: f32, d: f32) -> (f32, u8) {
    let (mut best, mut at) = (a, 0);
    for (v, i) in [(b, 1), (c, 2), (d, 3)] {
        if v > best || v.is_nan() {
            (best, at) = (v, i);
        }
    }
    (best, at)
}

/// The pixels of the window whose top-left cell is pixel `top + x`, row-major.
fn window(top: usize, x: usize, w: usize) -> [usize; 4] {
    [top + x, top + x + 1, top + w + x, top + w + x + 1]
}

/// The max-pool's input gradient: each output gradient goes to its window's winning
/// cell, where `masked_by` (the pooled ReLU output) is positive when given; every other
/// cell gets 0.
pub(super) fn max_pool_grad(
    dy: &[f32],
    s: Nhwc,
    winners: &[u8],
    masked_by: Option<&[f32]>,
    dx: &mut [f32],
) {
    let o = s.pooled();
    let (image, pooled_row) = (s.h * s.w * s.c, o.w * s.c);
    dx[..s.len()]
        .par_chunks_mut(image)
        .enumerate()
        .for_each(|(img, dx)| {
            dx.fill(0.0);
            let mask = masked_by.map(|y| &y[img * image..][..image]);
            for i in 0..o.h {
                let r = (img * o.h + i) * pooled_row;
                let (dy, winners) = (&dy[r..][..pooled_row], &winners[r..][..pooled_row]);
                for j in 0..o.w {
                    let cells = window(2 * i * s.w, 2 * j, s.w);
                    for ch in 0..s.c {
                        let at = j * s.c + ch;
                        let cell = cells[usize::from(winners[at])] * s.c + ch;
                        if mask.is_none_or(|y| y[cell] > 0.0) {
                            dx[cell] = dy[at];
                        }
                    }
                }
            }
        });
}

/// `nn.AdaptiveAvgPool2d(out)` then `flatten(1)`: `y[n][(c·out + i)·out + j]` averages
/// bin `(i, j)` of channel `c` (PyTorch's bins, which may overlap).
pub(super) fn pool_flatten(src: &[f32], s: Nhwc, out: usize, y: &mut [f32]) {
    let features = s.c * out * out;
    y[..s.n * features]
        .par_chunks_mut(features)
        .enumerate()
        .for_each(|(img, y)| {
            for i in 0..out {
                let (y0, y1) = adaptive_bin(i, s.h, out);
                for j in 0..out {
                    let (x0, x1) = adaptive_bin(j, s.w, out);
                    let count = ((y1 - y0) * (x1 - x0)) as f32;
                    for ch in 0..s.c {
                        let mut sum = 0.0f32;
                        for py in y0..y1 {
                            for px in x0..x1 {
                                sum += src[((img * s.h + py) * s.w + px) * s.c + ch];
                            }
                        }
                        y[(ch * out + i) * out + j] = sum / count;
                    }
                }
            }
        });
}

/// The input gradient of [`pool_flatten`]: every bin's gradient, divided by its size,
/// added to each of its cells.
pub(super) fn pool_flatten_grad(dy: &[f32], s: Nhwc, out: usize, dx: &mut [f32]) {
    let features = s.c * out * out;
    dx[..s.len()]
        .par_chunks_mut(s.h * s.w * s.c)
        .enumerate()
        .for_each(|(img, dx)| {
            dx.fill(0.0);
            let dy = &dy[img * features..][..features];
            for i in 0..out {
                let (y0, y1) = adaptive_bin(i, s.h, out);
                for j in 0..out {
                    let (x0, x1) = adaptive_bin(j, s.w, out);
                    let count = ((y1 - y0) * (x1 - x0)) as f32;
                    for py in y0..y1 {
                        for px in x0..x1 {
                            let cell = &mut dx[(py * s.w + px) * s.c..][..s.c];
                            for (ch, d) in cell.iter_mut().enumerate() {
                                *d += dy[(ch * out + i) * out + j] / count;
                            }
                        }
                    }
                }
            }
        });
}
