//! 3×3, stride-1, pad-1 convolution on NCHW f32 as im2col + GEMM, forward and backward.
//!
//! Why im2col + GEMM rather than the engine's Winograd: training needs three
//! products per layer (output, input gradient, weight gradient) on NCHW tensors
//! owned by candle. im2col turns all three into plain GEMMs on the same column
//! layout, with no padded-NHWC conversions in between, and the `gemm` crate
//! takes any strides (so the transposes are free). Measured on vgg11_bn's
//! layers at 32×32, batch 64, 2 shared cores: 75–115 GFLOP/s forward and
//! 45–105 backward for ≥ 32 channels, about the rate of PyTorch's whole
//! forward pass on the same machine. Winograd would cut the forward and
//! input-gradient multiplies, but not the weight gradient's, and the 2×2 and
//! 4×4 maps of the deep layers at this size are less than one F(4,3) tile.
//!
//! Columns cover a chunk of image rows across the batch (`[9·C][rows·W]`), so
//! the GEMMs stay wide on the 2×2 maps of deep layers, while a chunk never
//! exceeds [`CHUNK_FLOATS`] of scratch on 224×224 inputs.
//!
//! The input gradient of a 3×3 pad-1 convolution is itself a 3×3 pad-1
//! convolution of the output gradient, with the weights transposed to
//! `[in, out]` and rotated by 180°, so it reuses the forward kernel instead of
//! a col2im scatter.

use std::cell::RefCell;
use std::ops::Range;

use candle_core::{
    CpuStorage, CustomOp1, CustomOp2, CustomOp3, Layout, Result, Shape, Tensor, bail,
};
use rayon::prelude::*;

use super::{Mat, affine_grads, contiguous_f32, cpu_f32, matmul, matmul_long_inner};

/// Scratch (columns + per-chunk output) per chunk: 8 Mi floats, 32 MiB.
const CHUNK_FLOATS: usize = 8 << 20;

/// `x.conv2d(weight, padding 1, stride 1) + bias`: `x` NCHW `[N, C, H, W]`,
/// `weight` OIHW `[K, C, 3, 3]`, `bias` `[K]`. Backpropagates to all three.
pub fn conv3x3(x: &Tensor, weight: &Tensor, bias: &Tensor) -> Result<Tensor> {
    let (_, c, _, _) = x.dims4()?;
    let (k, wc, kh, kw) = weight.dims4()?;
    if (wc, kh, kw) != (c, 3, 3) || bias.dims() != [k] {
        bail!(
            "conv3x3: input {:?}, weight {:?} and bias {:?} do not match",
            x.dims(),
            weight.dims(),
            bias.dims()
        )
    }
    if !cpu_f32(&[x, weight, bias]) {
        return x
            .conv2d(weight, 1, 1, 1, 1)?
            .broadcast_add(&bias.reshape((1, (), 1, 1))?);
    }
    x.contiguous()?
        .apply_op3(&weight.contiguous()?, &bias.contiguous()?, Conv3x3)
}

/// Shape of an NCHW activation.
#[derive(Clone, Copy, Debug)]
struct Dims {
    n: usize,
    c: usize,
    h: usize,
    w: usize,
}

impl Dims {
    fn of(layout: &Layout) -> Result<Dims> {
        let (n, c, h, w) = layout.shape().dims4()?;
        Ok(Dims { n, c, h, w })
    }

    fn with_channels(self, c: usize) -> Dims {
        Dims { c, ..self }
    }

    fn len(self) -> usize {
        self.n * self.c * self.h * self.w
    }

    /// Rows of all images, the unit of chunking.
    fn image_rows(self) -> usize {
        self.n * self.h
    }

    fn shape(self) -> Shape {
        Shape::from((self.n, self.c, self.h, self.w))
    }
}

thread_local! {
    /// Column and chunk-output scratch, kept between calls: a fresh buffer of
    /// this size would be page-faulted in, and zeroed by the kernel, every call.
    static SCRATCH: RefCell<Vec<f32>> = const { RefCell::new(Vec::new()) };
}

/// Runs `f` on scratch buffers of `col_len` and `out_len` floats (stale contents).
/// The buffer is taken out of [`SCRATCH`] meanwhile, so a nested call (another
/// conv run by a rayon task on this thread) just allocates its own.
pub(crate) fn with_scratch<R>(
    col_len: usize,
    out_len: usize,
    f: impl FnOnce(&mut [f32], &mut [f32]) -> R,
) -> R {
    let mut buf = SCRATCH.take();
    if buf.len() < col_len + out_len {
        buf.resize(col_len + out_len, 0.0);
    }
    let (col, out) = buf[..col_len + out_len].split_at_mut(col_len);
    let result = f(col, out);
    SCRATCH.set(buf);
    result
}

/// Image rows per chunk when `col_rows` column rows and `out_rows` GEMM output rows are live.
fn rows_per_chunk(d: Dims, col_rows: usize, out_rows: usize) -> usize {
    (CHUNK_FLOATS / ((col_rows + out_rows) * d.w).max(1)).clamp(1, d.image_rows())
}

/// The chunks of image rows, in order.
fn chunks(d: Dims, rows_per_chunk: usize) -> impl Iterator<Item = Range<usize>> {
    let total = d.image_rows();
    (0..total)
        .step_by(rows_per_chunk)
        .map(move |r| r..(r + rows_per_chunk).min(total))
}

/// Writes the columns of image rows `rows` (flattened `n·H + y`) of `x` into
/// `col`: row `(ci·3 + ky)·3 + kx` holds `x[n, ci, y + ky − 1, x + kx − 1]`
/// (zero outside) for every pixel of the chunk.
fn im2col(x: &[f32], d: Dims, rows: Range<usize>, col: &mut [f32]) {
    let width = rows.len() * d.w;
    col.par_chunks_mut(width).enumerate().for_each(|(r, dst)| {
        let (ci, ky, kx) = (r / 9, r / 3 % 3, r % 3);
        for (row, out) in rows.clone().zip(dst.chunks_exact_mut(d.w)) {
            let (n, y) = (row / d.h, row % d.h);
            match (y + ky).checked_sub(1) {
                Some(sy) if sy < d.h => {
                    let start = ((n * d.c + ci) * d.h + sy) * d.w;
                    shift_row(&x[start..start + d.w], out, kx);
                }
                _ => out.fill(0.0),
            }
        }
    });
}

/// `out[i] = src[i + kx − 1]`, zero past either edge.
fn shift_row(src: &[f32], out: &mut [f32], kx: usize) {
    let w = src.len();
    match kx {
        0 => {
            out[0] = 0.0;
            out[1..].copy_from_slice(&src[..w - 1]);
        }
        1 => out.copy_from_slice(src),
        _ => {
            out[..w - 1].copy_from_slice(&src[1..]);
            out[w - 1] = 0.0;
        }
    }
}

/// The segment of NCHW plane `plane` (`n·C + c`) that image rows `rows` cover,
/// and where it starts in a chunk row; `None` when image `n` is not in the chunk.
fn plane_segment(d: Dims, plane: usize, rows: &Range<usize>) -> Option<(Range<usize>, usize)> {
    let n = plane / d.c;
    let first = rows.start.max(n * d.h);
    let last = rows.end.min((n + 1) * d.h);
    (first < last).then(|| {
        let plane_rows = first - n * d.h..last - n * d.h;
        (
            plane_rows.start * d.w..plane_rows.end * d.w,
            (first - rows.start) * d.w,
        )
    })
}

/// Copies chunk-major `cn` (`[C][rows·W]`) into the NCHW `out`, adding `bias[c]`.
fn scatter_chunk(cn: &[f32], d: Dims, rows: &Range<usize>, bias: Option<&[f32]>, out: &mut [f32]) {
    let width = rows.len() * d.w;
    out.par_chunks_mut(d.h * d.w)
        .enumerate()
        .for_each(|(plane, dst)| {
            let Some((seg, at)) = plane_segment(d, plane, rows) else {
                return;
            };
            let c = plane % d.c;
            let src = &cn[c * width + at..][..seg.len()];
            let b = bias.map_or(0.0, |b| b[c]);
            for (o, s) in dst[seg].iter_mut().zip(src) {
                *o = s + b;
            }
        });
}

/// The inverse of [`scatter_chunk`] (without bias): NCHW `t` into chunk-major `cn`.
fn gather_chunk(t: &[f32], d: Dims, rows: &Range<usize>, cn: &mut [f32]) {
    let width = rows.len() * d.w;
    let plane_len = d.h * d.w;
    cn.par_chunks_mut(width).enumerate().for_each(|(c, dst)| {
        for n in 0..d.n {
            if let Some((seg, at)) = plane_segment(d, n * d.c + c, rows) {
                let src = &t[(n * d.c + c) * plane_len..][seg.clone()];
                dst[at..at + seg.len()].copy_from_slice(src);
            }
        }
    });
}

/// Convolution of `x` (`d`) with `weight` as a `[K][9·C]` matrix, plus `bias`: NCHW `[N, K, H, W]`.
fn forward(x: &[f32], d: Dims, weight: &[f32], k: usize, bias: Option<&[f32]>) -> Vec<f32> {
    let per_chunk = rows_per_chunk(d, 9 * d.c, k);
    forward_in_chunks(x, d, weight, k, bias, per_chunk)
}

/// [`forward`] on chunks of `per_chunk` image rows.
fn forward_in_chunks(
    x: &[f32],
    d: Dims,
    weight: &[f32],
    k: usize,
    bias: Option<&[f32]>,
    per_chunk: usize,
) -> Vec<f32> {
    let out_dims = d.with_channels(k);
    let mut out = vec![0.0; out_dims.len()];
    if out.is_empty() {
        return out;
    }
    let col_rows = 9 * d.c;
    with_scratch(
        col_rows * per_chunk * d.w,
        k * per_chunk * d.w,
        |col, cn| {
            for rows in chunks(d, per_chunk) {
                let width = rows.len() * d.w;
                im2col(x, d, rows.clone(), &mut col[..col_rows * width]);
                let a = Mat::row_major(weight, k, col_rows);
                matmul(a, Mat::row_major(col, col_rows, width), cn, false);
                scatter_chunk(cn, out_dims, &rows, bias, &mut out);
            }
        },
    );
    out
}

/// `∂L/∂W` as `[K][9·C]`: `Σ dY · colᵀ` over all chunks.
fn weight_grad(x: &[f32], d: Dims, dy: &[f32], k: usize) -> Vec<f32> {
    let per_chunk = rows_per_chunk(d, 9 * d.c, k);
    weight_grad_in_chunks(x, d, dy, k, per_chunk)
}

/// [`weight_grad`] on chunks of `per_chunk` image rows.
fn weight_grad_in_chunks(x: &[f32], d: Dims, dy: &[f32], k: usize, per_chunk: usize) -> Vec<f32> {
    let col_rows = 9 * d.c;
    let mut dw = vec![0.0; k * col_rows];
    if d.len() == 0 || k == 0 {
        return dw;
    }
    with_scratch(
        col_rows * per_chunk * d.w,
        k * per_chunk * d.w,
        |col, cn| {
            for (i, rows) in chunks(d, per_chunk).enumerate() {
                let width = rows.len() * d.w;
                im2col(x, d, rows.clone(), &mut col[..col_rows * width]);
                gather_chunk(dy, d.with_channels(k), &rows, &mut cn[..k * width]);
                let cols = Mat::row_major(col, col_rows, width);
                matmul_long_inner(Mat::row_major(cn, k, width), cols.t(), &mut dw, i > 0);
            }
        },
    );
    dw
}

/// OIHW `[K, C, 3, 3]` weights transposed to `[C, K]` and rotated by 180°:
/// the kernel of the input gradient as a `[C][9·K]` matrix.
fn transpose_rotate(weight: &[f32], k: usize, c: usize) -> Vec<f32> {
    let mut out = vec![0.0; weight.len()];
    for ko in 0..k {
        for ci in 0..c {
            for tap in 0..9 {
                out[(ci * k + ko) * 9 + 8 - tap] = weight[(ko * c + ci) * 9 + tap];
            }
        }
    }
    out
}

/// `∂L/∂b[k]`: the sum of plane `k` of `dy` over the batch, accumulated in f64.
fn bias_grad(dy: &[f32], d: Dims) -> Vec<f32> {
    let plane = d.h * d.w;
    (0..d.c)
        .into_par_iter()
        .map(|c| {
            let sum: f64 = (0..d.n)
                .map(|n| {
                    let p = &dy[(n * d.c + c) * plane..][..plane];
                    p.iter().map(|&v| f64::from(v)).sum::<f64>()
                })
                .sum();
            sum as f32
        })
        .collect()
}

/// The forward op; its backward applies [`InputGrad`], [`WeightGrad`] and [`BiasGrad`].
struct Conv3x3;

impl CustomOp3 for Conv3x3 {
    fn name(&self) -> &'static str {
        "conv3x3"
    }

    fn cpu_fwd(
        &self,
        xs: &CpuStorage,
        xl: &Layout,
        ws: &CpuStorage,
        wl: &Layout,
        bs: &CpuStorage,
        bl: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let d = Dims::of(xl)?;
        let k = wl.shape().dims4()?.0;
        let (x, w, b) = (
            contiguous_f32(xs, xl)?,
            contiguous_f32(ws, wl)?,
            contiguous_f32(bs, bl)?,
        );
        let out = forward(x, d, w, k, Some(b));
        Ok((CpuStorage::F32(out), d.with_channels(k).shape()))
    }

    /// Only the gradients some variable depends on are computed (the network's
    /// input, for one, needs none).
    fn bwd(
        &self,
        x: &Tensor,
        weight: &Tensor,
        bias: &Tensor,
        _out: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        affine_grads((x, weight, bias), grad, &InputGrad, &WeightGrad, &BiasGrad)
    }
}

/// `(dY, W) → ∂L/∂x`.
struct InputGrad;

impl CustomOp2 for InputGrad {
    fn name(&self) -> &'static str {
        "conv3x3-input-grad"
    }

    fn cpu_fwd(
        &self,
        gs: &CpuStorage,
        gl: &Layout,
        ws: &CpuStorage,
        wl: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let d = Dims::of(gl)?;
        let c = wl.shape().dims4()?.1;
        let rotated = transpose_rotate(contiguous_f32(ws, wl)?, d.c, c);
        let dx = forward(contiguous_f32(gs, gl)?, d, &rotated, c, None);
        Ok((CpuStorage::F32(dx), d.with_channels(c).shape()))
    }
}

/// `(dY, x) → ∂L/∂W`.
struct WeightGrad;

impl CustomOp2 for WeightGrad {
    fn name(&self) -> &'static str {
        "conv3x3-weight-grad"
    }

    fn cpu_fwd(
        &self,
        gs: &CpuStorage,
        gl: &Layout,
        xs: &CpuStorage,
        xl: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let d = Dims::of(xl)?;
        let k = gl.shape().dims4()?.1;
        let dw = weight_grad(contiguous_f32(xs, xl)?, d, contiguous_f32(gs, gl)?, k);
        Ok((CpuStorage::F32(dw), Shape::from((k, d.c, 3, 3))))
    }
}

/// `dY → ∂L/∂b`.
struct BiasGrad;

impl CustomOp1 for BiasGrad {
    fn name(&self) -> &'static str {
        "conv3x3-bias-grad"
    }

    fn cpu_fwd(&self, gs: &CpuStorage, gl: &Layout) -> Result<(CpuStorage, Shape)> {
        let d = Dims::of(gl)?;
        let db = bias_grad(contiguous_f32(gs, gl)?, d);
        Ok((CpuStorage::F32(db), Shape::from(d.c)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn random(len: usize, seed: u64) -> Vec<f32> {
        let mut state = seed;
        (0..len)
            .map(|_| {
                state = state
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                (state >> 40) as f32 / (1u64 << 23) as f32 - 1.0
            })
            .collect()
    }

    fn assert_close(got: &[f32], want: &[f32], what: &str) {
        let scale = want.iter().fold(0f32, |m, v| m.max(v.abs()));
        for (i, (g, w)) in got.iter().zip(want).enumerate() {
            assert!((g - w).abs() <= 1e-5 * scale, "{what}[{i}]: {g} vs {w}");
        }
    }

    /// Chunks of any number of image rows, across image boundaries, give the
    /// single-chunk result (224×224 inputs always run in many chunks).
    #[test]
    fn chunking_does_not_change_results() {
        let d = Dims {
            n: 3,
            c: 5,
            h: 7,
            w: 6,
        };
        let k = 4;
        let x = random(d.len(), 1);
        let weight = random(k * 9 * d.c, 2);
        let bias = random(k, 3);
        let dy = random(d.with_channels(k).len(), 4);
        let all = d.image_rows();
        let out = forward_in_chunks(&x, d, &weight, k, Some(&bias), all);
        let dw = weight_grad_in_chunks(&x, d, &dy, k, all);
        for per_chunk in [1, 2, 5, 8, all - 1] {
            let label = format!("{per_chunk} rows per chunk");
            let chunked = forward_in_chunks(&x, d, &weight, k, Some(&bias), per_chunk);
            assert_close(&chunked, &out, &format!("output, {label}"));
            let chunked = weight_grad_in_chunks(&x, d, &dy, k, per_chunk);
            assert_close(&chunked, &dw, &format!("weight grad, {label}"));
        }
    }
}
