//! ReLU with PyTorch's gradient, as one pass each way.
//!
//! candle's backward builds a `x ≥ 0` mask, converts it to f32 and multiplies
//! (three passes and two temporaries), and passes the gradient through at
//! `x = 0`, where PyTorch's `threshold_backward` gives 0.

use candle_core::{CpuStorage, CustomOp1, CustomOp2, Layout, Result, Shape, Tensor};
use rayon::prelude::*;

use super::{contiguous_f32, cpu_f32};

/// Elements per parallel task: big enough to amortise the task, small enough to balance.
const TASK_LEN: usize = 1 << 14;

/// `max(x, 0)`, elementwise, NaN kept (as PyTorch's, so that an overflow shows in the
/// output rather than as zeros); the gradient flows where the output is positive.
pub fn relu(x: &Tensor) -> Result<Tensor> {
    if !cpu_f32(&[x]) {
        return x.relu();
    }
    x.contiguous()?.apply_op1(Relu)
}

/// The forward op; its backward applies [`ReluGrad`] to the output.
struct Relu;

impl CustomOp1 for Relu {
    fn name(&self) -> &'static str {
        "relu"
    }

    fn cpu_fwd(&self, xs: &CpuStorage, xl: &Layout) -> Result<(CpuStorage, Shape)> {
        let x = contiguous_f32(xs, xl)?;
        let mut y = vec![0.0f32; x.len()];
        y.par_chunks_mut(TASK_LEN)
            .zip(x.par_chunks(TASK_LEN))
            .for_each(|(y, x)| {
                for (o, &v) in y.iter_mut().zip(x) {
                    *o = crate::engine::relu(v);
                }
            });
        Ok((CpuStorage::F32(y), xl.shape().clone()))
    }

    fn bwd(&self, _x: &Tensor, out: &Tensor, grad: &Tensor) -> Result<Option<Tensor>> {
        Ok(Some(grad.contiguous()?.apply_op2_no_bwd(out, &ReluGrad)?))
    }
}

/// `(dy, y) → dy where y > 0, else 0`.
struct ReluGrad;

impl CustomOp2 for ReluGrad {
    fn name(&self) -> &'static str {
        "relu-grad"
    }

    fn cpu_fwd(
        &self,
        gs: &CpuStorage,
        gl: &Layout,
        ys: &CpuStorage,
        yl: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let (dy, y) = (contiguous_f32(gs, gl)?, contiguous_f32(ys, yl)?);
        let mut dx = vec![0.0f32; dy.len()];
        dx.par_chunks_mut(TASK_LEN)
            .zip(dy.par_chunks(TASK_LEN).zip(y.par_chunks(TASK_LEN)))
            .for_each(|(dx, (dy, y))| {
                for ((o, &g), &v) in dx.iter_mut().zip(dy).zip(y) {
                    *o = if v > 0.0 { g } else { 0.0 };
                }
            });
        Ok((CpuStorage::F32(dx), gl.shape().clone()))
    }
}

#[cfg(test)]
mod tests {
    use candle_core::{Device, Tensor};

    #[test]
    fn relu_keeps_nan_as_pytorch_does() {
        let x = Tensor::new(&[-1.0f32, f32::NAN, 2.0, f32::INFINITY], &Device::Cpu).unwrap();
        let y = super::relu(&x).unwrap().to_vec1::<f32>().unwrap();
        assert_eq!((y[0], y[2], y[3]), (0.0, 2.0, f32::INFINITY));
        assert!(y[1].is_nan());
    }
}
