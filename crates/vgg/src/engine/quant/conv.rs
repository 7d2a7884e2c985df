//! The direct int8 3×3 convolution: the input quantised to u8 once, its 3×3 neighbourhoods
//! gathered into rows (im2col: one byte per value, a quarter of f32's), an s8 GEMM with i32
//! sums, and one pass that rescales, adds the bias, applies the ReLU and writes f32.
//!
//! Plans run int8 convolutions in the Winograd domain by default (`winograd/int8.rs`: 2.25×
//! fewer products for about the same error); this one is `ConvChoice::Im2col`'s, and loses
//! less where the weights quantise well directly.

use crate::engine::EngineError;
use crate::engine::tensor::zeroed;
use rayon::prelude::*;

use super::super::simd::{self, GemmU8I8, Isa};
use super::super::tensor::{Shape, round16, zero_padded};
use super::{activation_scale, quantize_rows};

/// Output pixels per GEMM call: the rows of one im2col chunk (up to 295 KB at 512 channels,
/// which stays in L2 while the filter blocks sweep it).
const CHUNK_PIXELS: usize = 64;

/// Buffers an int8 convolution works in, shared by a plan's int8 layers.
#[derive(Default)]
pub(crate) struct Int8Scratch {
    /// The quantised input, NHWC with the input's channel stride.
    input: Vec<u8>,
    /// One im2col chunk per thread.
    col: Vec<u8>,
    /// One chunk of i32 sums per thread.
    acc: Vec<i32>,
}

impl Int8Scratch {
    /// A scratch large enough for every layer in `needs` (as `Int8Conv::scratch_len` gives).
    pub(crate) fn with_lengths(
        needs: impl Iterator<Item = [usize; 3]>,
    ) -> Result<Self, EngineError> {
        let [input, col, acc] = needs.fold([0; 3], |a, b| {
            [a[0].max(b[0]), a[1].max(b[1]), a[2].max(b[2])]
        });
        Ok(Int8Scratch {
            input: zeroed(input)?,
            col: zeroed(col)?,
            acc: zeroed(acc)?,
        })
    }
}

/// A compiled int8 convolution layer.
pub(crate) struct Int8Conv {
    /// Input channel stride (the GEMM's inner length is `9·cp`, tap-major).
    cp: usize,
    /// Output channel stride.
    kp: usize,
    /// Weights packed by quads for [`GemmU8I8`]: block `kb`, inner index `(tap·cp + ci)`.
    u: Vec<i8>,
    /// Per output channel: input scale × weight scale (0 for padding channels).
    rescale: Vec<f32>,
    bias: Vec<f32>,
    relu: bool,
    /// 1 / the input's scale.
    inv_input_scale: f32,
    input_max: f32,
    /// The weights' range, ±this.
    weight_limit: i8,
}

impl Int8Conv {
    /// Quantises OIHW `weight` (`k × c × 3 × 3`) per output channel, for inputs in
    /// `[0, input_max]`.
    pub(crate) fn new(
        (c, k): (usize, usize),
        weight: &[f32],
        bias: &[f32],
        relu: bool,
        input_max: f32,
    ) -> Self {
        let (cp, kp) = (round16(c), round16(k));
        let weight_limit = simd::gemm_weight_limit(Isa::detect());
        let (q, weight_scales) = quantize_rows(weight, c * 9, weight_limit);
        let k_len = 9 * cp;
        let mut u = vec![0i8; kp * k_len];
        for ko in 0..k {
            let (kb, l) = (ko / 16, ko % 16);
            for ci in 0..c {
                for tap in 0..9 {
                    let j = tap * cp + ci;
                    u[((kb * k_len / 4 + j / 4) * 16 + l) * 4 + j % 4] = q[(ko * c + ci) * 9 + tap];
                }
            }
        }
        let input_scale = activation_scale(input_max);
        let rescale: Vec<f32> = weight_scales.iter().map(|w| input_scale * w).collect();
        Int8Conv {
            cp,
            kp,
            u,
            rescale: zero_padded(&rescale, kp),
            bias: zero_padded(bias, kp),
            relu,
            inv_input_scale: 1.0 / input_scale,
            input_max,
            weight_limit,
        }
    }

    /// Bytes of quantised input, of im2col rows and i32 sums for input shape `s` on
    /// `threads` threads.
    pub(crate) fn scratch_len(&self, s: Shape, threads: usize) -> [usize; 3] {
        let parts = threads.max(1);
        [
            s.len(),
            parts * CHUNK_PIXELS * 9 * self.cp,
            parts * CHUNK_PIXELS * self.kp,
        ]
    }

    pub(crate) fn describe(&self) -> String {
        format!(
            "int8 im2col+gemm (u8 inputs in [0, {:.4}], weights in ±{} per channel), fused bias{}",
            self.input_max,
            self.weight_limit,
            if self.relu { "+relu" } else { "" }
        )
    }

    /// Convolves `src` (shape `s`) into `dst` (`s` with this layer's output channels).
    pub(crate) fn run(
        &self,
        isa: Isa,
        src: &[f32],
        s: Shape,
        dst: &mut [f32],
        sc: &mut Int8Scratch,
    ) {
        let input = &mut sc.input[..s.len()];
        simd::quantize_u8(isa, &src[..s.len()], self.inv_input_scale, input);
        let input = &*input;
        let pixels = s.n * s.h * s.w;
        let k_len = 9 * self.cp;
        // As many parts as threads, and no more than the scratch was sized for (a plan may
        // run in a larger thread pool than the one it was compiled in).
        let sized_for =
            (sc.col.len() / (CHUNK_PIXELS * k_len)).min(sc.acc.len() / (CHUNK_PIXELS * self.kp));
        let parts = rayon::current_num_threads().min(sized_for).clamp(1, pixels);
        let per_part = pixels.div_ceil(parts);
        dst[..pixels * self.kp]
            .par_chunks_mut(per_part * self.kp)
            .zip(sc.col.par_chunks_mut(CHUNK_PIXELS * k_len))
            .zip(sc.acc.par_chunks_mut(CHUNK_PIXELS * self.kp))
            .enumerate()
            .for_each(|(part, ((out, col), acc))| {
                let first = part * per_part;
                for (c, out) in out.chunks_mut(CHUNK_PIXELS * self.kp).enumerate() {
                    let p0 = first + c * CHUNK_PIXELS;
                    let np = out.len() / self.kp;
                    self.gather(input, s, p0, &mut col[..np * k_len]);
                    let g = GemmU8I8 {
                        k_len,
                        kbn: self.kp / 16,
                        np,
                        u: &self.u,
                        v: col,
                        v_stride: k_len,
                        m: acc,
                    };
                    simd::gemm_u8i8(isa, g);
                    self.finish(&acc[..np * self.kp], out);
                }
            });
    }

    /// Writes the 3×3 neighbourhoods of pixels `p0..` (over the whole batch) as rows of `col`.
    fn gather(&self, input: &[u8], s: Shape, p0: usize, col: &mut [u8]) {
        let plane = s.h * s.w;
        for (i, row) in col.chunks_exact_mut(9 * self.cp).enumerate() {
            let p = p0 + i;
            let (n, y, x) = (p / plane, p % plane / s.w, p % s.w);
            for (tap, dst) in row.chunks_exact_mut(self.cp).enumerate() {
                let (yy, xx) = (y + tap / 3, x + tap % 3);
                if yy == 0 || xx == 0 || yy > s.h || xx > s.w {
                    dst.fill(0);
                } else {
                    let o = s.at(n, yy - 1, xx - 1);
                    dst.copy_from_slice(&input[o..o + self.cp]);
                }
            }
        }
    }

    /// i32 sums → f32 outputs: rescale, bias, ReLU.
    fn finish(&self, acc: &[i32], out: &mut [f32]) {
        for (o, a) in out.chunks_exact_mut(self.kp).zip(acc.chunks_exact(self.kp)) {
            for (((o, a), r), b) in o.iter_mut().zip(a).zip(&self.rescale).zip(&self.bias) {
                let v = *a as f32 * r + b;
                *o = if self.relu { crate::engine::relu(v) } else { v };
            }
        }
    }
}
