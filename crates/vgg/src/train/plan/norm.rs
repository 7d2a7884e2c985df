//! Training-mode batch norm over NHWC rows `[pixels][C]`: the batch statistics, the
//! normalised output (with the following ReLU fused in), and the backward pass.
//!
//! Per-channel sums run over fixed pieces of rows, each in f32 lanes across channels
//! (the rows are contiguous, so the inner loop vectorises), and the pieces are added in
//! f64 in order: the result does not depend on the thread count.

use rayon::prelude::*;

/// Rows per partial sum.
const PIECE_ROWS: usize = 256;

/// A batch's per-channel mean and `1/√(var + eps)`, kept for the backward pass.
#[derive(Default)]
pub(super) struct BatchStats {
    pub mean: Vec<f32>,
    /// The biased variance, for the running averages.
    pub var: Vec<f32>,
    pub inv_std: Vec<f32>,
}

/// `Σ_rows f(row_a, row_b, out)`: `add(acc, a_row, b_row)` adds one row pair into a
/// piece's f32 accumulator, pieces are added in f64 in order.
fn channel_sums(
    a: &[f32],
    b: &[f32],
    c: usize,
    add: impl Fn(&mut [f32], &[f32], &[f32]) + Sync,
) -> Vec<f64> {
    let partials: Vec<Vec<f32>> = a
        .par_chunks(PIECE_ROWS * c)
        .zip(b.par_chunks(PIECE_ROWS * c))
        .map(|(a, b)| {
            let mut acc = vec![0.0f32; c];
            for (ra, rb) in a.chunks_exact(c).zip(b.chunks_exact(c)) {
                add(&mut acc, ra, rb);
            }
            acc
        })
        .collect();
    let mut sums = vec![0.0f64; c];
    for partial in partials {
        sums.iter_mut()
            .zip(partial)
            .for_each(|(s, p)| *s += f64::from(p));
    }
    sums
}

/// The batch statistics of `x` (`[pixels][C]`), in two passes (no cancellation).
pub(super) fn statistics(x: &[f32], c: usize, eps: f64, stats: &mut BatchStats) {
    let count = (x.len() / c) as f64;
    let sums = channel_sums(x, x, c, |acc, row, _| {
        acc.iter_mut().zip(row).for_each(|(a, &v)| *a += v);
    });
    let mean: Vec<f32> = sums.iter().map(|s| (s / count) as f32).collect();
    let squares = channel_sums(x, x, c, |acc, row, _| {
        for ((a, &v), &m) in acc.iter_mut().zip(row).zip(&mean) {
            *a += (v - m) * (v - m);
        }
    });
    stats.var = squares.iter().map(|s| (s / count) as f32).collect();
    stats.inv_std = stats
        .var
        .iter()
        .map(|&v| (1.0 / (f64::from(v) + eps).sqrt()) as f32)
        .collect();
    stats.mean = mean;
}

/// `y = (x − mean)·inv_std·weight + bias`, then ReLU when `relu`.
pub(super) fn normalise(
    x: &[f32],
    stats: &BatchStats,
    (weight, bias): (&[f32], &[f32]),
    relu: bool,
    y: &mut [f32],
) {
    let c = weight.len();
    let scale: Vec<f32> = stats
        .inv_std
        .iter()
        .zip(weight)
        .map(|(i, w)| i * w)
        .collect();
    let floor = if relu { 0.0 } else { f32::NEG_INFINITY };
    y.par_chunks_mut(PIECE_ROWS * c)
        .zip(x.par_chunks(PIECE_ROWS * c))
        .for_each(|(y, x)| {
            for (yr, xr) in y.chunks_exact_mut(c).zip(x.chunks_exact(c)) {
                for ch in 0..c {
                    yr[ch] = ((xr[ch] - stats.mean[ch]) * scale[ch] + bias[ch]).max(floor);
                }
            }
        });
}

/// With `x̂ = (x − mean)·inv_std` and `M` rows: `∂bias = Σ dy`, `∂weight = Σ dy·x̂`,
/// `∂x = weight·inv_std·(dy − ∂bias/M − x̂·∂weight/M)`. Writes `dx` and the two parameter
/// gradients.
pub(super) fn backward(
    x: &[f32],
    dy: &[f32],
    stats: &BatchStats,
    weight: &[f32],
    dx: &mut [f32],
    (dweight, dbias): (&mut [f32], &mut [f32]),
) {
    let c = weight.len();
    let count = (x.len() / c) as f32;
    let sums = channel_sums(dy, dy, c, |acc, g, _| {
        acc.iter_mut().zip(g).for_each(|(a, &g)| *a += g);
    });
    let dots = channel_sums(dy, x, c, |acc, g, v| {
        for ch in 0..c {
            acc[ch] += g[ch] * (v[ch] - stats.mean[ch]);
        }
    });
    for ch in 0..c {
        dbias[ch] = sums[ch] as f32;
        dweight[ch] = (dots[ch] * f64::from(stats.inv_std[ch])) as f32;
    }
    let scale: Vec<f32> = stats
        .inv_std
        .iter()
        .zip(weight)
        .map(|(i, w)| i * w)
        .collect();
    let mean_dy: Vec<f32> = dbias.iter().map(|d| d / count).collect();
    let mean_dyx: Vec<f32> = dweight
        .iter()
        .zip(&stats.inv_std)
        .map(|(d, i)| d / count * i)
        .collect();
    dx.par_chunks_mut(PIECE_ROWS * c)
        .zip(
            dy.par_chunks(PIECE_ROWS * c)
                .zip(x.par_chunks(PIECE_ROWS * c)),
        )
        .for_each(|(dx, (dy, x))| {
            let rows = dx
                .chunks_exact_mut(c)
                .zip(dy.chunks_exact(c).zip(x.chunks_exact(c)));
            for (o, (g, v)) in rows {
                for ch in 0..c {
                    let centred = v[ch] - stats.mean[ch];
                    o[ch] = scale[ch] * (g[ch] - mean_dy[ch] - centred * mean_dyx[ch]);
                }
            }
        });
}
