//! 2×2, stride-2 max-pool on NCHW f32 (odd sizes floor) with PyTorch's gradient:
//! all of it to the first maximum of each window in row-major order. Ties are
//! the rule after ReLU (all-zero windows), so which cell gets the gradient matters.
//!
//! The forward pass records the winning cell of every window (one byte each),
//! and the backward pass scatters the output gradient to those cells; both are
//! single passes, parallel over planes.

use std::sync::OnceLock;

use candle_core::{CpuStorage, CustomOp1, Error, Layout, Result, Shape, Tensor, bail};
use rayon::prelude::*;

use super::{contiguous_f32, cpu_f32};

/// `nn.MaxPool2d(2, 2)` on an NCHW tensor: values equal to candle's
/// `max_pool2d(2)`, gradient as [`super::tensor_pool::max_pool2d`]'s (and PyTorch's).
/// Maps smaller than 2×2 are an error, as in candle and PyTorch.
pub fn max_pool2x2(x: &Tensor) -> Result<Tensor> {
    let (_, _, h, w) = x.dims4()?;
    if h < 2 || w < 2 {
        bail!("max_pool2x2: a {h}×{w} map is smaller than the 2×2 window")
    }
    if !cpu_f32(&[x]) {
        return super::tensor_pool::max_pool2d(x).map_err(Error::wrap);
    }
    x.contiguous()?.apply_op1(MaxPool2x2::default())
}

/// Sizes of one input plane and its pooled plane.
#[derive(Clone, Copy)]
struct Planes {
    h: usize,
    w: usize,
    oh: usize,
    ow: usize,
}

impl Planes {
    fn new(h: usize, w: usize) -> Planes {
        Planes {
            h,
            w,
            oh: h / 2,
            ow: w / 2,
        }
    }

    /// Input offsets of the cells of window `(i, j)`, in row-major order.
    fn window(self, i: usize, j: usize) -> [usize; 4] {
        let top = 2 * i * self.w + 2 * j;
        [top, top + 1, top + self.w, top + self.w + 1]
    }
}

/// The forward op; keeps the winning cell (0‥3) of every window for the backward pass.
#[derive(Default)]
struct MaxPool2x2 {
    winners: OnceLock<Vec<u8>>,
}

impl CustomOp1 for MaxPool2x2 {
    fn name(&self) -> &'static str {
        "max-pool-2x2"
    }

    fn cpu_fwd(&self, storage: &CpuStorage, layout: &Layout) -> Result<(CpuStorage, Shape)> {
        let (n, c, h, w) = layout.shape().dims4()?;
        let p = Planes::new(h, w);
        let x = contiguous_f32(storage, layout)?;
        let out_plane = p.oh * p.ow;
        let mut out = vec![0.0f32; n * c * out_plane];
        let mut winners = vec![0u8; out.len()];
        if out_plane > 0 {
            out.par_chunks_mut(out_plane)
                .zip(winners.par_chunks_mut(out_plane))
                .zip(x.par_chunks(h * w))
                .for_each(|((out, winners), src)| pool_plane(src, p, out, winners));
        }
        if self.winners.set(winners).is_err() {
            bail!("max-pool-2x2 op applied twice")
        }
        Ok((CpuStorage::F32(out), Shape::from((n, c, p.oh, p.ow))))
    }

    fn bwd(&self, x: &Tensor, _out: &Tensor, grad: &Tensor) -> Result<Option<Tensor>> {
        let Some(winners) = self.winners.get() else {
            bail!("max-pool-2x2 backward before forward")
        };
        let (_, _, h, w) = x.dims4()?;
        let unpool = Unpool {
            winners,
            planes: Planes::new(h, w),
        };
        Ok(Some(grad.contiguous()?.apply_op1_no_bwd(&unpool)?))
    }
}

/// Pools one plane, recording the first maximum of each window (the last NaN, which wins
/// as in PyTorch's `val > max || isnan(val)`, so that an overflow shows in the output).
fn pool_plane(src: &[f32], p: Planes, out: &mut [f32], winners: &mut [u8]) {
    for i in 0..p.oh {
        for j in 0..p.ow {
            let cells = p.window(i, j);
            let mut best = 0;
            for q in 1..4 {
                let v = src[cells[q]];
                if v > src[cells[best]] || v.is_nan() {
                    best = q;
                }
            }
            out[i * p.ow + j] = src[cells[best]];
            winners[i * p.ow + j] = best as u8;
        }
    }
}

/// The backward op: each output gradient goes to its window's winning cell.
struct Unpool<'a> {
    winners: &'a [u8],
    planes: Planes,
}

impl CustomOp1 for Unpool<'_> {
    fn name(&self) -> &'static str {
        "max-unpool-2x2"
    }

    fn cpu_fwd(&self, storage: &CpuStorage, layout: &Layout) -> Result<(CpuStorage, Shape)> {
        let (n, c, oh, ow) = layout.shape().dims4()?;
        let p = self.planes;
        if (oh, ow) != (p.oh, p.ow) || self.winners.len() != n * c * oh * ow {
            bail!(
                "max-unpool-2x2: gradient {:?} does not match the pooling",
                layout.shape()
            )
        }
        let grad = contiguous_f32(storage, layout)?;
        let mut dx = vec![0.0f32; n * c * p.h * p.w];
        if oh * ow > 0 {
            dx.par_chunks_mut(p.h * p.w)
                .zip(grad.par_chunks(oh * ow))
                .zip(self.winners.par_chunks(oh * ow))
                .for_each(|((dx, grad), winners)| {
                    for i in 0..oh {
                        for j in 0..ow {
                            let at = i * ow + j;
                            dx[p.window(i, j)[usize::from(winners[at])]] = grad[at];
                        }
                    }
                });
        }
        Ok((CpuStorage::F32(dx), Shape::from((n, c, p.h, p.w))))
    }
}

#[cfg(test)]
mod tests {
    use candle_core::{Device, Tensor};

    #[test]
    fn a_nan_anywhere_in_the_window_wins_as_in_pytorch() {
        for at in 0..4 {
            let mut cells = [1.0f32, 5.0, -2.0, 3.0];
            cells[at] = f32::NAN;
            let x = Tensor::from_vec(cells.to_vec(), (1, 1, 2, 2), &Device::Cpu).unwrap();
            let y = super::max_pool2x2(&x).unwrap().flatten_all().unwrap();
            assert!(y.to_vec1::<f32>().unwrap()[0].is_nan(), "NaN at {at}");
        }
    }
}
