//! Pooling: the standalone 2×2 max-pool (when not fused into a convolution)
//! and adaptive average pooling, either computed or folded into the first
//! classifier layer.

use rayon::prelude::*;

use super::tensor::Shape;

/// 2×2 stride-2 max-pool on padded NHWC (odd sizes floor).
pub(crate) fn max_pool_2x2(src: &[f32], s: Shape, dst: &mut [f32]) {
    let o = s.pooled();
    dst[..o.len()]
        .par_chunks_mut(o.w * o.cp)
        .enumerate()
        .for_each(|(row, out)| {
            let (n, y) = (row / o.h, row % o.h);
            for (x, px) in out.chunks_exact_mut(o.cp).enumerate() {
                let taps = [(0, 0), (0, 1), (1, 0), (1, 1)]
                    .map(|(dy, dx)| s.at(n, 2 * y + dy, 2 * x + dx));
                for (c, v) in px.iter_mut().enumerate() {
                    *v = taps
                        .iter()
                        .map(|&t| src[t + c])
                        .fold(f32::NEG_INFINITY, super::max_keeping_nan);
                }
            }
        });
}

/// PyTorch adaptive-pool bin `[floor(i·n/o), ceil((i+1)·n/o))` of output cell `i` when
/// pooling `n` cells to `o`: the one definition every pooling path uses.
pub fn adaptive_bin(i: usize, n: usize, o: usize) -> (usize, usize) {
    (i * n / o, ((i + 1) * n).div_ceil(o))
}

/// Adaptive average pooling of padded NHWC `src` to `o×o` (padded NHWC).
pub(crate) fn adaptive_avg_pool(src: &[f32], s: Shape, o: usize, dst: &mut [f32]) {
    let d = Shape { h: o, w: o, ..s };
    for n in 0..s.n {
        for i in 0..o {
            let (y0, y1) = adaptive_bin(i, s.h, o);
            for j in 0..o {
                let (x0, x1) = adaptive_bin(j, s.w, o);
                let out = &mut dst[d.at(n, i, j)..d.at(n, i, j) + s.cp];
                out.fill(0.0);
                for y in y0..y1 {
                    for x in x0..x1 {
                        for (v, a) in out
                            .iter_mut()
                            .zip(&src[s.at(n, y, x)..s.at(n, y, x) + s.cp])
                        {
                            *v += a;
                        }
                    }
                }
                let inv = 1.0 / ((y1 - y0) * (x1 - x0)) as f32;
                out.iter_mut().for_each(|v| *v *= inv);
            }
        }
    }
}

/// Rewrites the first classifier weight `w` ([out][c·o·o], PyTorch channel-major
/// flatten) so it consumes a padded NHWC `h×w×cp` feature map directly,
/// absorbing the adaptive average pool from `h×w` to `o×o`:
/// `W'[r][(y·w + x)·cp + ch] = Σ_{cells (i,j) ∋ (y,x)} W[r][ch·o² + i·o + j] / |bin_i|·|bin_j|`.
///
/// Rows are rewritten one at a time in place when the new row is not longer,
/// so the (up to 411 MB) matrix is never held twice.
pub(crate) fn fold_into_linear(
    mut w: Vec<f32>,
    out: usize,
    c: usize,
    o: usize,
    f: Shape,
) -> Vec<f32> {
    let old = c * o * o;
    let new = f.h * f.w * f.cp;
    let mut row = vec![0.0f32; new];
    let mut fresh = if new > old {
        vec![0.0f32; out * new]
    } else {
        Vec::new()
    };
    for r in 0..out {
        row.fill(0.0);
        let src = &w[r * old..(r + 1) * old];
        for i in 0..o {
            let (y0, y1) = adaptive_bin(i, f.h, o);
            for j in 0..o {
                let (x0, x1) = adaptive_bin(j, f.w, o);
                let scale = 1.0 / ((y1 - y0) * (x1 - x0)) as f32;
                for y in y0..y1 {
                    for x in x0..x1 {
                        let base = (y * f.w + x) * f.cp;
                        for ch in 0..c {
                            row[base + ch] += src[ch * o * o + i * o + j] * scale;
                        }
                    }
                }
            }
        }
        if new > old {
            fresh[r * new..(r + 1) * new].copy_from_slice(&row);
        } else {
            // Row r's new slot ends at (r+1)·new ≤ (r+1)·old: unread rows stay intact.
            w[r * new..(r + 1) * new].copy_from_slice(&row);
        }
    }
    if new > old {
        fresh
    } else {
        w.truncate(out * new);
        w.shrink_to_fit();
        w
    }
}
