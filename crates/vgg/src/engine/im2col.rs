//! 3×3 pad-1 convolution as im2col + GEMM. Used for the first layer (3 input
//! channels: a Winograd tile would be 16× channel padding for nothing) and as
//! the ablation baseline for the other layers.

use std::ops::Range;

use super::gemm::{Mat, matmul_on};
use super::tensor::{Shape, zero_padded};

/// Working-set target for one im2col chunk (fits the 2 MiB L2 with the output).
const CHUNK_BYTES: usize = 1 << 20;

/// A compiled im2col convolution layer.
pub(crate) struct Im2colConv {
    c: usize,
    kp: usize,
    /// Weights as the GEMM right operand `[(ky·3 + kx)·c + ci][kp]`.
    w: Vec<f32>,
    /// Bias padded to `kp`.
    bias: Vec<f32>,
    relu: bool,
}

impl Im2colConv {
    pub(crate) fn new(c: usize, k: usize, weight: &[f32], bias: &[f32], relu: bool) -> Self {
        let kp = super::tensor::round16(k);
        let mut w = Vec::new();
        gemm_weights(weight, (c, k), kp, &mut w);
        Im2colConv {
            c,
            kp,
            w,
            bias: zero_padded(bias, kp),
            relu,
        }
    }

    /// Output pixels per GEMM call.
    fn chunk_pixels(&self, s: Shape) -> usize {
        (CHUNK_BYTES / (9 * self.c * 4)).max(64).min(s.h * s.w)
    }

    /// Length of the column scratch buffer for input shape `s`.
    pub(crate) fn scratch_len(&self, s: Shape) -> usize {
        self.chunk_pixels(s) * 9 * self.c
    }

    pub(crate) fn describe(&self) -> String {
        format!(
            "im2col+gemm, fused bias{}",
            if self.relu { "+relu" } else { "" }
        )
    }

    /// Convolves `src` into `dst` (`s` with `k` channels), `col` ≥ `scratch_len(s)`.
    pub(crate) fn run(
        &self,
        src: &[f32],
        s: Shape,
        dst: &mut [f32],
        col: &mut [f32],
        threads: usize,
    ) {
        let plane = s.h * s.w;
        let chunk = self.chunk_pixels(s);
        let kc = 9 * self.c;
        for n in 0..s.n {
            let mut p0 = 0;
            while p0 < plane {
                let np = chunk.min(plane - p0);
                let col = &mut col[..np * kc];
                gather(src, s, n * plane + p0..n * plane + p0 + np, col);
                let out = &mut dst[(n * plane + p0) * self.kp..(n * plane + p0 + np) * self.kp];
                for px in out.chunks_exact_mut(self.kp) {
                    px.copy_from_slice(&self.bias);
                }
                matmul_on(
                    Mat::row_major(col, np, kc),
                    Mat::row_major(&self.w, kc, self.kp),
                    out,
                    true,
                    threads,
                );
                if self.relu {
                    out.iter_mut().for_each(|v| *v = super::relu(*v));
                }
                p0 += np;
            }
        }
    }
}

/// OIHW weights `[k][c][3][3]` as the GEMM's right operand `[(tap·c + ci)][kp]` (output
/// channels zero-padded to `kp`), the layout [`gather`]'s columns multiply.
pub(crate) fn gemm_weights(oihw: &[f32], (c, k): (usize, usize), kp: usize, out: &mut Vec<f32>) {
    out.clear();
    out.resize(9 * c * kp, 0.0);
    for ko in 0..k {
        for ci in 0..c {
            for tap in 0..9 {
                out[(tap * c + ci) * kp + ko] = oihw[(ko * c + ci) * 9 + tap];
            }
        }
    }
}

/// Writes the 3×3 neighbourhoods of `pixels` (flattened over the batch, `(n·H + y)·W + x`)
/// of `src` as rows of `col`: per pixel, tap by tap, the `s.c` real channels of the
/// neighbour `(y + ky − 1, x + kx − 1)`, zeros outside the image.
pub(crate) fn gather(src: &[f32], s: Shape, pixels: Range<usize>, col: &mut [f32]) {
    let plane = s.h * s.w;
    for (p, row) in pixels.zip(col.chunks_exact_mut(9 * s.c)) {
        let (n, y, x) = (p / plane, p % plane / s.w, p % s.w);
        for (tap, dst) in row.chunks_exact_mut(s.c).enumerate() {
            let (sy, sx) = ((y + tap / 3).checked_sub(1), (x + tap % 3).checked_sub(1));
            match (sy, sx) {
                (Some(sy), Some(sx)) if sy < s.h && sx < s.w => {
                    let at = s.at(n, sy, sx);
                    dst.copy_from_slice(&src[at..at + s.c]);
                }
                _ => dst.fill(0.0),
            }
        }
    }
}
