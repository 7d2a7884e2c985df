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

/// Per-channel sums over the rows of `a` and `b` (`[rows][C]` each): `add(acc, a_row,
/// b_row)` adds one row pair into a piece's f32 accumulators (`width` of them), and the
/// pieces are added in f64, in order.
fn channel_sums(
    (a, b): (&[f32], &[f32]),
    c: usize,
    width: usize,
    add: impl Fn(&mut [f32], &[f32], &[f32]) + Sync,
) -> Vec<f64> {
    let partials: Vec<Vec<f32>> = a
        .par_chunks(PIECE_ROWS * c)
        .zip(b.par_chunks(PIECE_ROWS * c))
        .map(|(a, b)| {
            let mut acc = vec![0.0f32; width];
            for (ra, rb) in a.chunks_exact(c).zip(b.chunks_exact(c)) {
                add(&mut acc, ra, rb);
            }
            acc
        })
        .collect();
    add_pieces(partials, width)
}

/// The f32 sums of the pieces, added in f64 in piece order.
fn add_pieces(partials: Vec<Vec<f32>>, width: usize) -> Vec<f64> {
    let mut sums = vec![0.0f64; width];
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
    let sums = channel_sums((x, x), c, c, |acc, row, _| {
        acc.iter_mut().zip(row).for_each(|(a, &v)| *a += v);
    });
    let mean: Vec<f32> = sums.iter().map(|s| (s / count) as f32).collect();
    let squares = channel_sums((x, x), c, c, |acc, row, _| {
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
                let channels = stats.mean.iter().zip(&scale).zip(bias);
                for ((o, &v), ((&m, &s), &b)) in yr.iter_mut().zip(xr).zip(channels) {
                    *o = crate::engine::max_keeping_nan(floor, (v - m) * s + b);
                }
            }
        });
}

/// With `x̂ = (x − mean)·inv_std` and `M` rows: `∂bias = Σ dy`, `∂weight = Σ dy·x̂`,
/// `∂x = weight·inv_std·(dy − ∂bias/M − x̂·∂weight/M)`. Writes `dx` and the two parameter
/// gradients. With `relu_output` (the fused ReLU's output), `dy` is first masked where it
/// is not positive, in place.
pub(super) fn backward(
    x: &[f32],
    (dy, relu_output): (&mut [f32], Option<&[f32]>),
    stats: &BatchStats,
    weight: &[f32],
    dx: &mut [f32],
    (dweight, dbias): (&mut [f32], &mut [f32]),
) {
    let c = weight.len();
    let count = (x.len() / c) as f32;
    let piece = PIECE_ROWS * c;
    // Per piece: the ReLU mask, then the accumulators `[Σ dy | Σ dy·(x − mean)]`.
    let partials = dy
        .par_chunks_mut(piece)
        .zip(x.par_chunks(piece))
        .enumerate()
        .map(|(i, (dy, x))| {
            if let Some(y) = relu_output {
                super::dense::relu_grad(dy, &y[i * piece..][..dy.len()]);
            }
            let mut acc = vec![0.0f32; 2 * c];
            let (sum, dot) = acc.split_at_mut(c);
            for (g, v) in dy.chunks_exact(c).zip(x.chunks_exact(c)) {
                let rows = sum.iter_mut().zip(dot.iter_mut()).zip(g.iter().zip(v));
                for (((s, d), (&g, &v)), &m) in rows.zip(&stats.mean) {
                    *s += g;
                    *d += g * (v - m);
                }
            }
            acc
        })
        .collect();
    let sums = add_pieces(partials, 2 * c);
    for ch in 0..c {
        dbias[ch] = sums[ch] as f32;
        dweight[ch] = (sums[c + ch] * f64::from(stats.inv_std[ch])) as f32;
    }
    let scale: Vec<f32> = (stats.inv_std.iter().zip(weight))
        .map(|(i, w)| i * w)
        .collect();
    let mean_dy: Vec<f32> = dbias.iter().map(|d| d / count).collect();
    let mean_dyx: Vec<f32> = (dweight.iter().zip(&stats.inv_std))
        .map(|(d, i)| d / count * i)
        .collect();
    let dy = &*dy;
    dx.par_chunks_mut(piece)
        .zip(dy.par_chunks(piece).zip(x.par_chunks(piece)))
        .for_each(|(dx, (dy, x))| {
            let rows = dx
                .chunks_exact_mut(c)
                .zip(dy.chunks_exact(c).zip(x.chunks_exact(c)));
            for (o, (g, v)) in rows {
                let channels = stats
                    .mean
                    .iter()
                    .zip(&scale)
                    .zip(mean_dy.iter().zip(&mean_dyx));
                for ((o, (&g, &v)), ((&m, &s), (&mdy, &mdyx))) in
                    o.iter_mut().zip(g.iter().zip(v)).zip(channels)
                {
                    *o = s * (g - mdy - (v - m) * mdyx);
                }
            }
        });
}
