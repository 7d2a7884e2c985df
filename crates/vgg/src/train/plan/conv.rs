//! 3×3, stride-1, pad-1 convolution on NHWC activations: the output and both gradients,
//! each as im2col + GEMM over blocks of pixels.
//!
//! In NHWC a pixel's 3×3 neighbourhood is nine contiguous runs of `C` values, so a block's
//! columns `[pixels][9·C]` are nine row copies per pixel (NCHW needs a shifted copy per
//! row, channel and tap), and the GEMM's output `[pixels][K]` is already the next layer's
//! NHWC input. Each block is gathered and multiplied by one thread while its columns are
//! in cache: blocks run in parallel, their GEMMs single-threaded.
//!
//! Where both channel counts are whole 16-lane blocks and the map is at least one 4×4
//! output tile, the product runs on the inference engine's Winograd F(4×4, 3×3) instead
//! (whose padded NHWC layout is then exactly this one): 4× fewer multiplies, for a filter
//! transform per step.
//!
//! The input gradient of a 3×3 pad-1 convolution is the 3×3 pad-1 convolution of the
//! output gradient with the weights rotated by 180° and transposed, so it runs the
//! forward kernel. The weight gradient sums `columnsᵀ · dY` over every pixel: fixed
//! pieces of the pixels are summed in parallel and their partial sums added in piece
//! order, so the result does not depend on the thread count.

use std::ops::Range;

use rayon::prelude::*;

use super::Nhwc;
use crate::engine::gemm::{Mat, matmul_on};
use crate::engine::simd::Isa;
use crate::engine::{
    Precision, ScratchBuffers, WinogradConv, WinogradVariant, gather, gemm_weights,
};
use crate::ops::with_scratch;

/// Pixels per block of the forward and input-gradient GEMMs.
const BLOCK_PIXELS: usize = 256;
/// Pixels per partial sum of the weight gradient (at least; at most [`MAX_PIECES`] pieces).
const PIECE_PIXELS: usize = 512;
/// Most column values gathered for one weight-gradient GEMM.
const MAX_COLUMNS: usize = 2 << 20;
/// Most partial weight gradients held at once.
const MAX_PIECES: usize = 8;

/// The input gradient's convolution weights: OIHW `[K][C][3][3]` rotated by 180° and
/// transposed to `[C][K][3][3]`.
fn rotated_transposed(oihw: &[f32], c: usize, k: usize, out: &mut Vec<f32>) {
    out.resize(9 * c * k, 0.0);
    for ko in 0..k {
        for ci in 0..c {
            for tap in 0..9 {
                out[(ci * k + ko) * 9 + 8 - tap] = oihw[(ko * c + ci) * 9 + tap];
            }
        }
    }
}

/// The weight gradient `[K][(tap·C + c)]` as OIHW `[K][C][3][3]`.
fn to_oihw(columns: &[f32], c: usize, oihw: &mut [f32]) {
    oihw.par_chunks_mut(c * 9)
        .enumerate()
        .for_each(|(ko, row)| {
            for ci in 0..c {
                for tap in 0..9 {
                    row[ci * 9 + tap] = columns[ko * 9 * c + tap * c + ci];
                }
            }
        });
}

/// Buffers the convolutions reuse from step to step.
pub(super) struct ConvWork {
    isa: Isa,
    /// The im2col GEMM's weight operand.
    gemm_weights: Vec<f32>,
    /// The Winograd convolution's transformed tiles.
    tiles: ScratchBuffers,
    /// The input gradient's convolution weights.
    rotated: Vec<f32>,
    /// The weight gradient with taps before channels, and its partial sums.
    weight_grad: Vec<f32>,
    partials: Vec<f32>,
}

impl Default for ConvWork {
    fn default() -> Self {
        ConvWork {
            isa: Isa::detect(),
            gemm_weights: Vec::new(),
            tiles: ScratchBuffers::default(),
            rotated: Vec::new(),
            weight_grad: Vec::new(),
            partials: Vec::new(),
        }
    }
}

/// The backward pass of `y = conv(x, oihw) + bias` given `dy`: the weight (OIHW) and bias
/// gradients into `dw` and `db`, and the input gradient into `dx` when asked for.
pub(super) fn backward(
    (x, s): (&[f32], Nhwc),
    dy: &[f32],
    oihw: &[f32],
    (dw, db): (&mut [f32], &mut [f32]),
    dx: Option<&mut [f32]>,
    work: &mut ConvWork,
) {
    let k = db.len();
    let mut columns = std::mem::take(&mut work.weight_grad);
    columns.resize(9 * s.c * k, 0.0);
    weight_grad((x, s), dy, (&mut columns, db), &mut work.partials);
    to_oihw(&columns, s.c, dw);
    work.weight_grad = columns;
    if let Some(dx) = dx {
        let mut rotated = std::mem::take(&mut work.rotated);
        rotated_transposed(oihw, s.c, k, &mut rotated);
        let zeros = vec![0.0; s.c];
        convolve(
            (dy, s.with_channels(k)),
            (&rotated, &zeros),
            false,
            dx,
            work,
        );
        work.rotated = rotated;
    }
}

/// `out[P][K] = conv(src, oihw) + bias`, then ReLU when `relu`: `src` is `s`, `oihw` the
/// weights `[K][C][3][3]`. Winograd where it pays (see the module documentation),
/// im2col + GEMM otherwise, and where the Winograd transforms overflow float32 (a
/// diverging run's activations), so that the step computes what PyTorch would.
pub(super) fn convolve(
    (src, s): (&[f32], Nhwc),
    (oihw, bias): (&[f32], &[f32]),
    relu: bool,
    out: &mut [f32],
    work: &mut ConvWork,
) {
    let k = bias.len();
    if s.c % 16 == 0 && k % 16 == 0 && s.h.min(s.w) >= 16 {
        let variant = WinogradVariant::F43;
        let conv = WinogradConv::new(variant, Precision::F32, (s.c, k), oihw, bias, relu);
        let padded = s.unpadded();
        let need = conv.scratch_len(padded).f32;
        if work.tiles.f32.len() < need {
            work.tiles.f32.resize(need, 0.0);
        }
        if conv
            .run(work.isa, src, padded, out, &mut work.tiles, false)
            .is_ok()
        {
            return;
        }
    }
    gemm_weights(oihw, (s.c, k), k, &mut work.gemm_weights);
    gemm_convolve(src, s, &work.gemm_weights, bias, relu, out);
}

/// [`convolve`] by im2col + GEMM, with `weights` the operand `[9·C][K]`.
fn gemm_convolve(src: &[f32], s: Nhwc, weights: &[f32], bias: &[f32], relu: bool, out: &mut [f32]) {
    let (kc, k) = (9 * s.c, bias.len());
    out[..s.pixels() * k]
        .par_chunks_mut(BLOCK_PIXELS * k)
        .enumerate()
        .for_each(|(block, out)| {
            let start = block * BLOCK_PIXELS;
            let np = out.len() / k;
            with_scratch(np * kc, 0, |col, _| {
                gather(src, s.unpadded(), start..start + np, col);
                out.chunks_exact_mut(k)
                    .for_each(|px| px.copy_from_slice(bias));
                let (a, b) = (Mat::row_major(col, np, kc), Mat::row_major(weights, kc, k));
                matmul_on(a, b, out, true, 1);
            });
            if relu {
                out.iter_mut().for_each(|v| *v = crate::engine::relu(*v));
            }
        });
}

/// The pixel ranges whose weight gradients are summed separately, from the shapes alone.
fn pieces(pixels: usize) -> Vec<Range<usize>> {
    let count = pixels.div_ceil(PIECE_PIXELS).clamp(1, MAX_PIECES);
    let len = pixels.div_ceil(count);
    (0..count)
        .map(|i| i * len..((i + 1) * len).min(pixels))
        .filter(|r| !r.is_empty())
        .collect()
}

/// `dw[K][(tap·C + c)] = Σ_p dy[p]ᵀ · columns(src)[p]` and `db[k] = Σ_p dy[p][k]`: the
/// gradients of the weights (taps before channels) and bias. The first piece
/// sums into `dw`, the others into `partials` (reused between steps), added in order.
fn weight_grad(
    (src, s): (&[f32], Nhwc),
    dy: &[f32],
    (dw, db): (&mut [f32], &mut [f32]),
    partials: &mut Vec<f32>,
) {
    let (kc, k) = (9 * s.c, db.len());
    let ranges = pieces(s.pixels());
    partials.resize((ranges.len() - 1) * kc * k, 0.0);
    let mut outs: Vec<&mut [f32]> = std::iter::once(&mut *dw)
        .chain(partials.chunks_exact_mut(kc * k))
        .collect();
    let bias_partials: Vec<Vec<f64>> = (outs.par_iter_mut().zip(ranges))
        .map(|(out, piece)| {
            let mut db = vec![0.0f64; k];
            let block = (MAX_COLUMNS / kc).max(BLOCK_PIXELS);
            let mut start = piece.start;
            while start < piece.end {
                let np = block.min(piece.end - start);
                let dy = &dy[start * k..(start + np) * k];
                with_scratch(np * kc, 0, |col, _| {
                    gather(src, s.unpadded(), start..start + np, col);
                    let a = Mat::row_major(dy, np, k).t();
                    let b = Mat::row_major(col, np, kc);
                    matmul_on(a, b, out, start > piece.start, 1);
                });
                for px in dy.chunks_exact(k) {
                    db.iter_mut().zip(px).for_each(|(d, &g)| *d += f64::from(g));
                }
                start += np;
            }
            db
        })
        .collect();
    for partial in partials.chunks_exact(kc * k) {
        dw.par_chunks_mut(1 << 14)
            .zip(partial.par_chunks(1 << 14))
            .for_each(|(d, p)| d.iter_mut().zip(p).for_each(|(d, p)| *d += p));
    }
    let mut bias_sums = vec![0.0f64; k];
    for partial in bias_partials {
        bias_sums.iter_mut().zip(partial).for_each(|(d, p)| *d += p);
    }
    db.iter_mut()
        .zip(bias_sums)
        .for_each(|(d, s)| *d = s as f32);
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A 16→16-channel layer on a 16×16 map (Winograd's shape), weights within ±1e-3 and
    /// the input within ±6·`scale`: its output by [`convolve`] and by the direct product.
    fn both_ways(scale: f32) -> (Vec<f32>, Vec<f32>) {
        let s = Nhwc {
            n: 1,
            h: 16,
            w: 16,
            c: 16,
        };
        let x: Vec<f32> = (0..s.len())
            .map(|i| scale * (((i * 7919) % 13) as f32 - 6.0))
            .collect();
        let oihw: Vec<f32> = (0..16 * 16 * 9)
            .map(|i| ((i * 104_729) % 11) as f32 / 5000.0 - 1e-3)
            .collect();
        let bias = [0.01; 16];
        let mut work = ConvWork::default();
        let mut winograd = vec![0.0; s.len()];
        convolve((&x, s), (&oihw, &bias), true, &mut winograd, &mut work);
        let mut weights = Vec::new();
        gemm_weights(&oihw, (16, 16), 16, &mut weights);
        let mut direct = vec![0.0; s.len()];
        gemm_convolve(&x, s, &weights, &bias, true, &mut direct);
        (winograd, direct)
    }

    #[test]
    fn an_overflowing_winograd_transform_falls_back_to_the_direct_convolution() {
        // Inputs up to 3e38: the F(4,3) input transform's sums exceed float32's 3.4e38.
        let (winograd, direct) = both_ways(5e37);
        assert!(direct.iter().all(|v| v.is_finite()));
        assert!(
            direct.iter().any(|&v| v > 1e35),
            "the layer's output is large"
        );
        assert!(winograd == direct, "the direct convolution's result");
    }

    #[test]
    fn ordinary_inputs_run_on_winograd() {
        let (winograd, direct) = both_ways(1.0);
        assert!(winograd != direct, "the two algorithms round differently");
        for (a, b) in winograd.iter().zip(&direct) {
            assert!((a - b).abs() <= 1e-4 * b.abs().max(1.0), "{a} vs {b}");
        }
    }
}
