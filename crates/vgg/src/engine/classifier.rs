//! Fully-connected layers. At small batch these are bound by streaming the
//! weights (fc6 alone is 411 MB at 224×224), so the kernel reads each weight
//! row once and reuses it for up to 4 batch rows from cache; rows are split
//! across threads so both cores pull memory. In bf16 the weights take half the bytes, in
//! int8 a quarter.

use rayon::prelude::*;

use super::gemm::{Mat, matmul_on};
use super::pool::fold_into_linear;
use super::quant::{activation_scale, quantize_rows};
use super::simd::{self, Bf16, DotRows, DotRowsBf16, DotRowsU8I8, Isa};
use super::tensor::Shape;
use super::{EngineError, Linear};

/// Weight rows per parallel task.
const ROWS_PER_TASK: usize = 32;

/// bf16 rows are zero-padded to a multiple of this (one `vdpbf16ps` reads 32 values).
const BF16_ROW_MULTIPLE: usize = 32;

/// int8 rows are zero-padded to a multiple of this (one `vpdpbusd zmm` reads 64 values).
const INT8_ROW_MULTIPLE: usize = 64;

/// The number format of one linear layer.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) enum Format {
    F32,
    Bf16,
    /// u8 inputs in `[0, input_max]`, s8 weights with one scale per output.
    Int8 {
        input_max: f32,
    },
}

/// A linear layer's weights, `[out][inp]` row-major, in the layer's format.
enum Weights {
    F32(Vec<f32>),
    /// Each row zero-padded to `stride` (a multiple of [`BF16_ROW_MULTIPLE`]).
    Bf16 {
        w: Vec<Bf16>,
        stride: usize,
    },
    /// Each row zero-padded to `stride` (a multiple of [`INT8_ROW_MULTIPLE`]); output `r` is
    /// `rescale[r]` × its i32 sum.
    Int8 {
        w: Vec<i8>,
        stride: usize,
        rescale: Vec<f32>,
        inv_input_scale: f32,
    },
}

/// A compiled linear layer `y = W x + b` (+ ReLU).
pub(crate) struct Fc {
    pub(crate) inp: usize,
    pub(crate) out: usize,
    w: Weights,
    b: Vec<f32>,
    relu: bool,
}

impl Fc {
    pub(crate) fn new(
        (inp, out): (usize, usize),
        w: Vec<f32>,
        b: Vec<f32>,
        relu: bool,
        format: Format,
    ) -> Fc {
        assert_eq!(w.len(), inp * out);
        let w = match format {
            Format::F32 => Weights::F32(w),
            Format::Int8 { input_max } => {
                let stride = inp.next_multiple_of(INT8_ROW_MULTIPLE);
                let (q, scales) = quantize_rows(&w, inp, i8::MAX);
                let mut padded = vec![0i8; out * stride];
                for (dst, src) in padded.chunks_exact_mut(stride).zip(q.chunks_exact(inp)) {
                    dst[..inp].copy_from_slice(src);
                }
                let input_scale = activation_scale(input_max);
                Weights::Int8 {
                    w: padded,
                    stride,
                    rescale: scales.iter().map(|s| s * input_scale).collect(),
                    inv_input_scale: 1.0 / input_scale,
                }
            }
            Format::Bf16 => {
                let stride = inp.next_multiple_of(BF16_ROW_MULTIPLE);
                let mut padded = vec![Bf16::default(); out * stride];
                let isa = Isa::detect();
                for (dst, src) in padded.chunks_exact_mut(stride).zip(w.chunks_exact(inp)) {
                    simd::convert_to_bf16(isa, src, &mut dst[..inp]);
                }
                Weights::Bf16 { w: padded, stride }
            }
        };
        Fc {
            inp,
            out,
            w,
            b,
            relu,
        }
    }

    pub(crate) fn describe(&self) -> String {
        let products = match self.w {
            Weights::F32(_) => "",
            Weights::Bf16 { .. } => ", bf16×bf16→f32",
            Weights::Int8 { .. } => ", u8×s8→i32",
        };
        format!(
            "linear {}→{} (row-streaming gemv{products}{})",
            self.inp,
            self.out,
            if self.relu { ", fused relu" } else { "" }
        )
    }

    /// Whether this layer computes in int8.
    pub(crate) fn is_int8(&self) -> bool {
        matches!(self.w, Weights::Int8 { .. })
    }

    /// `y = x Wᵀ + b` (+ ReLU) as one GEMM: for many rows (the dense head's windows), where
    /// arithmetic, not streaming the weights, bounds the time. `x`: `[rows][inp]`, `y`: `[rows][out]`.
    /// Only f32 layers have this form (the dense head is compiled in f32).
    pub(crate) fn run_gemm(&self, x: &[f32], rows: usize, y: &mut [f32]) {
        let Weights::F32(w) = &self.w else {
            panic!("run_gemm needs f32 weights; the dense head is compiled in f32")
        };
        let weights = Mat::row_major(w, self.out, self.inp).t();
        let threads = rayon::current_num_threads();
        matmul_on(
            Mat::row_major(x, rows, self.inp),
            weights,
            y,
            false,
            threads,
        );
        for row in y[..rows * self.out].chunks_exact_mut(self.out) {
            for (v, b) in row.iter_mut().zip(&self.b) {
                *v += b;
                if self.relu {
                    *v = super::relu(*v);
                }
            }
        }
    }

    /// `x`: `[batch][inp]`, `y`: `[batch][out]`, `tmp` ≥ `batch·out` (transposed result).
    pub(crate) fn run(&self, isa: Isa, x: &[f32], batch: usize, y: &mut [f32], tmp: &mut [f32]) {
        let tmp = &mut tmp[..batch * self.out];
        match &self.w {
            Weights::F32(w) => self.products_f32(isa, w, x, batch, tmp),
            Weights::Bf16 { w, stride } => self.products_bf16(isa, (w, *stride), x, batch, tmp),
            Weights::Int8 {
                w,
                stride,
                rescale,
                inv_input_scale,
            } => {
                let rows = (&w[..], *stride, &rescale[..], *inv_input_scale);
                self.products_int8(isa, rows, x, batch, tmp);
            }
        }
        for (r, t) in tmp.chunks_exact(batch).enumerate() {
            for (b, v) in t.iter().enumerate() {
                let v = v + self.b[r];
                y[b * self.out + r] = if self.relu { super::relu(v) } else { v };
            }
        }
    }

    /// The products `W x` in f32 into the transposed `tmp` (`[out][batch]`).
    fn products_f32(&self, isa: Isa, w: &[f32], x: &[f32], batch: usize, tmp: &mut [f32]) {
        dot_blocks(tmp, batch, |r0, t| {
            let w = &w[r0 * self.inp..(r0 + t.len() / batch) * self.inp];
            let (inp, y) = (self.inp, t);
            simd::dot_rows(
                isa,
                DotRows {
                    w,
                    inp,
                    x,
                    batch,
                    y,
                },
            );
        });
    }

    /// The products with bf16 weight rows `w` of `stride` values, the input rounded to bf16.
    fn products_bf16(
        &self,
        isa: Isa,
        (w, stride): (&[Bf16], usize),
        x: &[f32],
        batch: usize,
        tmp: &mut [f32],
    ) {
        // The input in bf16, padded like the weight rows: `batch` rows against the
        // layer's `out` weight rows, so small beside the weights each run streams.
        let mut x_bf16 = vec![Bf16::default(); batch * stride];
        for (dst, src) in x_bf16
            .chunks_exact_mut(stride)
            .zip(x.chunks_exact(self.inp))
        {
            simd::convert_to_bf16(isa, src, &mut dst[..self.inp]);
        }
        let x = &x_bf16[..];
        dot_blocks(tmp, batch, |r0, t| {
            let w = &w[r0 * stride..(r0 + t.len() / batch) * stride];
            let (inp, y) = (stride, t);
            simd::dot_rows_bf16(
                isa,
                DotRowsBf16 {
                    w,
                    inp,
                    x,
                    batch,
                    y,
                },
            );
        });
    }

    /// The products in u8 × s8 with int32 sums, rescaled to f32: int8 weight rows `w` of
    /// `stride` values, output `r` scaled by `rescale[r]`, the input quantised at
    /// `inv_input_scale`.
    fn products_int8(
        &self,
        isa: Isa,
        (w, stride, rescale, inv_input_scale): (&[i8], usize, &[f32], f32),
        x: &[f32],
        batch: usize,
        tmp: &mut [f32],
    ) {
        let mut x_u8 = vec![0u8; batch * stride];
        for (dst, src) in x_u8.chunks_exact_mut(stride).zip(x.chunks_exact(self.inp)) {
            simd::quantize_u8(isa, src, inv_input_scale, &mut dst[..self.inp]);
        }
        let x = &x_u8[..];
        dot_blocks(tmp, batch, |r0, t| {
            let rows = t.len() / batch;
            let mut sums = vec![0i32; t.len()];
            let d = DotRowsU8I8 {
                w: &w[r0 * stride..(r0 + rows) * stride],
                inp: stride,
                x,
                batch,
                y: &mut sums,
            };
            simd::dot_rows_u8i8(isa, d);
            let rows = t.chunks_exact_mut(batch).zip(sums.chunks_exact(batch));
            for (r, (t, s)) in rows.enumerate() {
                for (t, s) in t.iter_mut().zip(s) {
                    *t = *s as f32 * rescale[r0 + r];
                }
            }
        });
    }
}

/// Fills the transposed result `tmp` (`[out][batch]`) in parallel blocks of
/// [`ROWS_PER_TASK`] weight rows: `block(first_row, block_of_tmp)`.
fn dot_blocks(tmp: &mut [f32], batch: usize, block: impl Fn(usize, &mut [f32]) + Sync) {
    tmp.par_chunks_mut(ROWS_PER_TASK * batch)
        .enumerate()
        .for_each(|(i, t)| block(i * ROWS_PER_TASK, t));
}

/// Builds the FC layers, layer `i` in `format(i)`; the first one is rewritten to read the
/// NHWC feature map (and absorb the adaptive pool when `fold` applies). Returns whether it did.
pub(crate) fn compile(
    classifier: Vec<Linear>,
    (feat, o): (Shape, usize),
    fold: bool,
    format: impl Fn(usize) -> Format,
) -> Result<(Vec<Fc>, bool), EngineError> {
    if classifier.is_empty() {
        return Err(EngineError::InvalidSpec("empty classifier".into()));
    }
    let folded = fold && feat.h * feat.w <= o * o;
    let mut fcs = Vec::new();
    let mut inp = feat.c * o * o;
    for (i, l) in classifier.into_iter().enumerate() {
        if l.in_features != inp
            || l.weight.len() != l.in_features * l.out_features
            || l.bias.len() != l.out_features
        {
            return Err(EngineError::InvalidSpec(format!(
                "linear {i}: expected {inp} inputs and matching weight/bias sizes"
            )));
        }
        let (w, fin) = if i == 0 {
            let src = if folded {
                feat
            } else {
                Shape { h: o, w: o, ..feat }
            };
            (
                fold_into_linear(l.weight, l.out_features, feat.c, o, src),
                src.h * src.w * src.cp,
            )
        } else {
            (l.weight, l.in_features)
        };
        fcs.push(Fc::new((fin, l.out_features), w, l.bias, l.relu, format(i)));
        inp = l.out_features;
    }
    Ok((fcs, folded))
}
