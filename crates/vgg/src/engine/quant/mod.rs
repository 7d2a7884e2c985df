//! int8 inference: calibrated activation ranges, per-row weight quantisation, the direct
//! int8 convolution, and the calibration that measures what each layer loses.
//!
//! Calibrated activations are u8 with zero point 0: every layer the engine quantises reads
//! the output of a ReLU (or a max- or average-pool of one), so nothing below zero is lost
//! and all 256 steps cover `[0, max]` (the Winograd int8 convolution scales its tiles from
//! the data instead, see `winograd/int8.rs`). Weights are s8 in `[-127, 127]`, one scale
//! per output channel (symmetric, so the i32 sums need no zero-point corrections); a
//! convolution's in `[-64, 64]` where the CPU has no `vpdpbusd` (see
//! [`super::simd::gemm_weight_limit`]).

mod calibrate;
mod conv;

pub use calibrate::{Calibrator, LayerError, LayerReport, QuantLayer};
pub(crate) use conv::{Int8Conv, Int8Scratch};

/// The calibrated input range (the largest input seen) of each layer that computes in int8,
/// by position: `convs[i]` for the `i`-th convolution, `linears[j]` for the `j`-th linear
/// layer. `None` keeps that layer in f32.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Int8Ranges {
    pub convs: Vec<Option<f32>>,
    pub linears: Vec<Option<f32>>,
}

/// Scale of u8 activations whose largest value is `input_max` (255 steps over `[0, max]`);
/// a layer that never saw a positive input gets 1 (every input then quantises to 0).
pub(crate) fn activation_scale(input_max: f32) -> f32 {
    if input_max > 0.0 && input_max.is_finite() {
        input_max / 255.0
    } else {
        1.0
    }
}

/// Symmetric s8 quantisation of the rows of `w`: per row, `scale = max|w| / limit` and
/// `q = round(w / scale)` in `[-limit, limit]`; returns the quantised rows and their scales.
/// An all-zero row gets scale 1.
pub(crate) fn quantize_rows(w: &[f32], row_len: usize, limit: i8) -> (Vec<i8>, Vec<f32>) {
    let levels = f32::from(limit);
    let mut q = vec![0i8; w.len()];
    let mut scales = Vec::with_capacity(w.len() / row_len.max(1));
    for (dst, row) in q.chunks_exact_mut(row_len).zip(w.chunks_exact(row_len)) {
        let max = row.iter().fold(0.0f32, |m, v| m.max(v.abs()));
        let scale = if max > 0.0 { max / levels } else { 1.0 };
        for (d, v) in dst.iter_mut().zip(row) {
            *d = (v / scale).round().clamp(-levels, levels) as i8;
        }
        scales.push(scale);
    }
    (q, scales)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_quantise_symmetrically_per_row() {
        let w = [0.5, -1.0, 0.25, 0.0, 0.0, 0.0, 2.0, 1.0, -0.01];
        let (q, s) = quantize_rows(&w, 3, 127);
        assert_eq!(s, [1.0 / 127.0, 1.0, 2.0 / 127.0]);
        assert_eq!(q, [64, -127, 32, 0, 0, 0, 127, 64, -1]);
        let (q, s) = quantize_rows(&w[..3], 3, 64);
        assert_eq!((q, s), (vec![32, -64, 16], vec![1.0 / 64.0]));
        assert_eq!(activation_scale(51.0), 0.2);
        assert_eq!(activation_scale(0.0), 1.0);
        assert_eq!(activation_scale(f32::NAN), 1.0);
    }
}
