//! Training-mode batch norm on NCHW f32 as one fused op per direction.
//!
//! candle builds it from nine broadcast and reduction ops over dims (0, 2, 3),
//! each a strided pass with a temporary, and twice as many in the backward
//! pass; this is 3 passes forward (mean, variance, normalise) and 2 backward
//! (the two per-channel sums, then the input gradient), parallel over channels.

use candle_core::{
    CpuStorage, CustomOp1, CustomOp2, CustomOp3, Layout, Result, Shape, Tensor, bail,
};
use rayon::prelude::*;

use super::{contiguous_f32, cpu_f32};

/// `nn.BatchNorm2d` in training mode on NCHW `x` with per-channel `weight` and
/// `bias`: normalises with the batch's mean and biased variance, and returns the
/// output (differentiable w.r.t. all three inputs) with those statistics, `[C]`
/// each and detached, for the caller's running averages.
pub fn batch_norm_train(
    x: &Tensor,
    weight: &Tensor,
    bias: &Tensor,
    eps: f64,
) -> Result<(Tensor, Tensor, Tensor)> {
    let (_, c, _, _) = x.dims4()?;
    if weight.dims() != [c] || bias.dims() != [c] {
        bail!(
            "batch_norm_train: input {:?}, weight {:?} and bias {:?} do not match",
            x.dims(),
            weight.dims(),
            bias.dims()
        )
    }
    if !cpu_f32(&[x, weight, bias]) {
        return candle_batch_norm(x, weight, bias, eps);
    }
    let x = x.contiguous()?;
    let stats = x.apply_op1_no_bwd(&ChannelStats)?;
    let (mean, var) = (stats.get(0)?, stats.get(1)?);
    let op = BatchNorm::new(&mean.to_vec1()?, &var.to_vec1()?, eps);
    let y = x.apply_op3(&weight.contiguous()?, &bias.contiguous()?, op)?;
    Ok((y, mean, var))
}

/// The same with candle's ops, for other devices and dtypes.
fn candle_batch_norm(
    x: &Tensor,
    weight: &Tensor,
    bias: &Tensor,
    eps: f64,
) -> Result<(Tensor, Tensor, Tensor)> {
    let per_channel = |t: &Tensor| t.reshape((1, (), 1, 1));
    let mean = x.mean_keepdim((0, 2, 3))?;
    let centred = x.broadcast_sub(&mean)?;
    let var = centred.sqr()?.mean_keepdim((0, 2, 3))?;
    let scale = ((&var + eps)?.sqrt()?.recip()?.flatten_all()? * weight)?;
    let y = centred
        .broadcast_mul(&per_channel(&scale)?)?
        .broadcast_add(&per_channel(bias)?)?;
    Ok((y, mean.flatten_all()?.detach(), var.flatten_all()?.detach()))
}

/// Sum of `f(a[i], b[i])` over two equal-length slices, in 8 independent f32
/// lanes (so it vectorises) added up in f64.
fn lane_sum(a: &[f32], b: &[f32], f: impl Fn(f32, f32) -> f32) -> f64 {
    let mut lanes = [0f32; 8];
    let (a8, b8) = (a.chunks_exact(8), b.chunks_exact(8));
    let tail: f64 = a8
        .remainder()
        .iter()
        .zip(b8.remainder())
        .map(|(&x, &y)| f64::from(f(x, y)))
        .sum();
    for (x, y) in a8.zip(b8) {
        for l in 0..8 {
            lanes[l] += f(x[l], y[l]);
        }
    }
    lanes.iter().map(|&v| f64::from(v)).sum::<f64>() + tail
}

/// The planes `[H·W]` of channel `c` in an NCHW buffer.
fn planes(
    t: &[f32],
    (n, c_len, h, w): (usize, usize, usize, usize),
    c: usize,
) -> impl Iterator<Item = &[f32]> {
    (0..n).map(move |i| &t[(i * c_len + c) * h * w..][..h * w])
}

/// `x → [mean, biased variance]` per channel, `[2, C]` (two passes, so no cancellation).
struct ChannelStats;

impl CustomOp1 for ChannelStats {
    fn name(&self) -> &'static str {
        "batch-norm-stats"
    }

    fn cpu_fwd(&self, xs: &CpuStorage, xl: &Layout) -> Result<(CpuStorage, Shape)> {
        let dims = xl.shape().dims4()?;
        let (n, c, h, w) = dims;
        let x = contiguous_f32(xs, xl)?;
        let count = (n * h * w) as f64;
        let stats: Vec<(f32, f32)> = (0..c)
            .into_par_iter()
            .map(|ch| {
                let sum: f64 = planes(x, dims, ch).map(|p| lane_sum(p, p, |v, _| v)).sum();
                let mean = (sum / count) as f32;
                let squares: f64 = planes(x, dims, ch)
                    .map(|p| lane_sum(p, p, |v, _| (v - mean) * (v - mean)))
                    .sum();
                (mean, (squares / count) as f32)
            })
            .collect();
        let (mean, var): (Vec<f32>, Vec<f32>) = stats.into_iter().unzip();
        Ok((CpuStorage::F32([mean, var].concat()), Shape::from((2, c))))
    }
}

/// The forward op, holding the batch statistics its backward pass needs.
struct BatchNorm {
    mean: Vec<f32>,
    inv_std: Vec<f32>,
}

impl BatchNorm {
    fn new(mean: &[f32], var: &[f32], eps: f64) -> BatchNorm {
        let inv_std = var
            .iter()
            .map(|&v| (1.0 / (f64::from(v) + eps).sqrt()) as f32)
            .collect();
        BatchNorm {
            mean: mean.to_vec(),
            inv_std,
        }
    }
}

/// A new buffer of `len` values filled plane by plane: `fill(i, out)` writes plane `i`.
fn map_planes(len: usize, plane: usize, fill: impl Fn(usize, &mut [f32]) + Sync) -> Vec<f32> {
    let mut out = vec![0.0; len];
    if plane > 0 {
        out.par_chunks_mut(plane)
            .enumerate()
            .for_each(|(i, out)| fill(i, out));
    }
    out
}

impl CustomOp3 for BatchNorm {
    fn name(&self) -> &'static str {
        "batch-norm-train"
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
        let (_, c, h, w) = xl.shape().dims4()?;
        let (weight, bias) = (contiguous_f32(ws, wl)?, contiguous_f32(bs, bl)?);
        let x = contiguous_f32(xs, xl)?;
        let plane = h * w;
        let y = map_planes(x.len(), plane, |i, out| {
            let ch = i % c;
            let (m, s, b) = (self.mean[ch], self.inv_std[ch] * weight[ch], bias[ch]);
            for (o, &v) in out.iter_mut().zip(&x[i * plane..]) {
                *o = (v - m) * s + b;
            }
        });
        Ok((CpuStorage::F32(y), xl.shape().clone()))
    }

    /// With `x̂ = (x − mean)·inv_std` and `M` values per channel:
    /// `∂b = Σ dy`, `∂w = Σ dy·x̂`, `∂x = w·inv_std·(dy − ∂b/M − x̂·∂w/M)`.
    fn bwd(
        &self,
        x: &Tensor,
        weight: &Tensor,
        _bias: &Tensor,
        _out: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let grad = grad.contiguous()?;
        let sums = grad.apply_op2_no_bwd(x, &GradSums { stats: self })?;
        let (db, dw) = (sums.get(0)?, sums.get(1)?);
        let input_grad = InputGrad {
            stats: self,
            weight: weight.to_vec1()?,
            dbias: db.to_vec1()?,
            dweight: dw.to_vec1()?,
        };
        let dx = x
            .track_op()
            .then(|| grad.apply_op2_no_bwd(x, &input_grad))
            .transpose()?;
        Ok((dx, Some(dw), Some(db)))
    }
}

/// `(dy, x) → [Σ dy, Σ dy·x̂]` per channel, `[2, C]`.
struct GradSums<'a> {
    stats: &'a BatchNorm,
}

impl CustomOp2 for GradSums<'_> {
    fn name(&self) -> &'static str {
        "batch-norm-grad-sums"
    }

    fn cpu_fwd(
        &self,
        gs: &CpuStorage,
        gl: &Layout,
        xs: &CpuStorage,
        xl: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let dims = xl.shape().dims4()?;
        let (dy, x) = (contiguous_f32(gs, gl)?, contiguous_f32(xs, xl)?);
        let sums: Vec<(f32, f32)> = (0..dims.1)
            .into_par_iter()
            .map(|c| {
                let m = self.stats.mean[c];
                let (mut sum, mut dot) = (0f64, 0f64);
                for (g, v) in planes(dy, dims, c).zip(planes(x, dims, c)) {
                    sum += lane_sum(g, g, |g, _| g);
                    dot += lane_sum(g, v, |g, v| g * (v - m));
                }
                (sum as f32, (dot * f64::from(self.stats.inv_std[c])) as f32)
            })
            .collect();
        let (sum, dot): (Vec<f32>, Vec<f32>) = sums.into_iter().unzip();
        Ok((
            CpuStorage::F32([sum, dot].concat()),
            Shape::from((2, dims.1)),
        ))
    }
}

/// `(dy, x) → ∂x`, given the per-channel sums.
struct InputGrad<'a> {
    stats: &'a BatchNorm,
    weight: Vec<f32>,
    dbias: Vec<f32>,
    dweight: Vec<f32>,
}

impl CustomOp2 for InputGrad<'_> {
    fn name(&self) -> &'static str {
        "batch-norm-input-grad"
    }

    fn cpu_fwd(
        &self,
        gs: &CpuStorage,
        gl: &Layout,
        xs: &CpuStorage,
        xl: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let (n, c, h, w) = xl.shape().dims4()?;
        let count = (n * h * w) as f32;
        let (dy, x) = (contiguous_f32(gs, gl)?, contiguous_f32(xs, xl)?);
        let plane = h * w;
        let dx = map_planes(x.len(), plane, |i, out| {
            let ch = i % c;
            let (m, inv) = (self.stats.mean[ch], self.stats.inv_std[ch]);
            let scale = self.weight[ch] * inv;
            let (mean_dy, mean_dyx) = (self.dbias[ch] / count, self.dweight[ch] / count);
            let (dy, x) = (&dy[i * plane..], &x[i * plane..]);
            for ((o, &g), &v) in out.iter_mut().zip(dy).zip(x) {
                *o = scale * (g - mean_dy - (v - m) * inv * mean_dyx);
            }
        });
        Ok((CpuStorage::F32(dx), xl.shape().clone()))
    }
}
