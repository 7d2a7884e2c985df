//! Fully-connected layers. At small batch these are bound by streaming the
//! weights (fc6 alone is 411 MB at 224×224), so the kernel reads each weight
//! row once and reuses it for up to 4 batch rows from cache; rows are split
//! across threads so both cores pull memory.

use rayon::prelude::*;

use super::gemm::{Mat, matmul_on};
use super::pool::fold_into_linear;
use super::simd::{self, DotRows, Isa};
use super::tensor::Shape;
use super::{EngineError, Linear};

/// Weight rows per parallel task.
const ROWS_PER_TASK: usize = 32;

/// A compiled linear layer `y = W x + b` (+ ReLU).
pub(crate) struct Fc {
    pub(crate) inp: usize,
    pub(crate) out: usize,
    /// `[out][inp]` row-major.
    w: Vec<f32>,
    b: Vec<f32>,
    relu: bool,
}

impl Fc {
    pub(crate) fn new(inp: usize, out: usize, w: Vec<f32>, b: Vec<f32>, relu: bool) -> Fc {
        assert_eq!(w.len(), inp * out);
        Fc {
            inp,
            out,
            w,
            b,
            relu,
        }
    }

    pub(crate) fn describe(&self) -> String {
        format!(
            "linear {}→{} (row-streaming gemv{})",
            self.inp,
            self.out,
            if self.relu { ", fused relu" } else { "" }
        )
    }

    /// `y = x Wᵀ + b` (+ ReLU) as one GEMM: for many rows (the dense head's windows), where
    /// arithmetic, not streaming the weights, bounds the time. `x`: `[rows][inp]`, `y`: `[rows][out]`.
    pub(crate) fn run_gemm(&self, x: &[f32], rows: usize, y: &mut [f32]) {
        let weights = Mat::row_major(&self.w, self.out, self.inp).t();
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
                    *v = v.max(0.0);
                }
            }
        }
    }

    /// `x`: `[batch][inp]`, `y`: `[batch][out]`, `tmp` ≥ `batch·out` (transposed result).
    pub(crate) fn run(&self, isa: Isa, x: &[f32], batch: usize, y: &mut [f32], tmp: &mut [f32]) {
        let tmp = &mut tmp[..batch * self.out];
        tmp.par_chunks_mut(ROWS_PER_TASK * batch)
            .enumerate()
            .for_each(|(i, t)| {
                let r0 = i * ROWS_PER_TASK;
                let rows = t.len() / batch;
                let w = &self.w[r0 * self.inp..(r0 + rows) * self.inp];
                simd::dot_rows(
                    isa,
                    DotRows {
                        w,
                        inp: self.inp,
                        x,
                        batch,
                        y: t,
                    },
                );
            });
        for (r, t) in tmp.chunks_exact(batch).enumerate() {
            for (b, v) in t.iter().enumerate() {
                let v = v + self.b[r];
                y[b * self.out + r] = if self.relu { v.max(0.0) } else { v };
            }
        }
    }
}

/// Builds the FC layers; the first one is rewritten to read the NHWC feature
/// map (and absorb the adaptive pool when `fold` applies). Returns whether it did.
pub(crate) fn compile(
    classifier: Vec<Linear>,
    feat: Shape,
    o: usize,
    fold: bool,
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
        fcs.push(Fc::new(fin, l.out_features, w, l.bias, l.relu));
        inp = l.out_features;
    }
    Ok((fcs, folded))
}
