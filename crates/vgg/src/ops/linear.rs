//! Fully-connected layer `y = x·Wᵀ + b` with PyTorch's `[out, in]` weights.
//!
//! Through candle, `x.matmul(&w.t())` differentiates to the gradient of `Wᵀ`,
//! which the transpose's backward then adds, strided, into a zero `[out, in]`
//! tensor: on vgg's 25088×4096 layer that transposed add costs more than all
//! three GEMMs. Here every product is one `gemm` call whose strides absorb the
//! transposes, and each gradient comes out contiguous in its parameter's layout.

use candle_core::{
    CpuStorage, CustomOp1, CustomOp2, CustomOp3, Layout, Result, Shape, Tensor, bail,
};
use rayon::prelude::*;

use super::{Mat, affine_grads, contiguous_f32, cpu_f32, matmul};

/// `nn.Linear`: `x` `[N, in]`, `weight` `[out, in]`, `bias` `[out]` → `[N, out]`.
pub fn linear(x: &Tensor, weight: &Tensor, bias: &Tensor) -> Result<Tensor> {
    let (_, inputs) = x.dims2()?;
    let (outputs, w_inputs) = weight.dims2()?;
    if w_inputs != inputs || bias.dims() != [outputs] {
        bail!(
            "linear: input {:?}, weight {:?} and bias {:?} do not match",
            x.dims(),
            weight.dims(),
            bias.dims()
        )
    }
    if !cpu_f32(&[x, weight, bias]) {
        return x.matmul(&weight.t()?)?.broadcast_add(&bias.unsqueeze(0)?);
    }
    x.contiguous()?
        .apply_op3(&weight.contiguous()?, &bias.contiguous()?, Linear)
}

/// The forward op; its backward applies the three products below.
struct Linear;

impl CustomOp3 for Linear {
    fn name(&self) -> &'static str {
        "linear"
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
        let (n, inputs) = xl.shape().dims2()?;
        let outputs = wl.shape().dims2()?.0;
        let bias = contiguous_f32(bs, bl)?;
        let mut y: Vec<f32> = (0..n).flat_map(|_| bias.iter().copied()).collect();
        let x = Mat::row_major(contiguous_f32(xs, xl)?, n, inputs);
        let w = Mat::row_major(contiguous_f32(ws, wl)?, outputs, inputs);
        matmul(x, w.t(), &mut y, true);
        Ok((CpuStorage::F32(y), Shape::from((n, outputs))))
    }

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

/// `(dY, W) → dY·W`.
struct InputGrad;

impl CustomOp2 for InputGrad {
    fn name(&self) -> &'static str {
        "linear-input-grad"
    }

    fn cpu_fwd(
        &self,
        gs: &CpuStorage,
        gl: &Layout,
        ws: &CpuStorage,
        wl: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let (n, outputs) = gl.shape().dims2()?;
        let inputs = wl.shape().dims2()?.1;
        let mut dx = vec![0.0; n * inputs];
        let dy = Mat::row_major(contiguous_f32(gs, gl)?, n, outputs);
        matmul(
            dy,
            Mat::row_major(contiguous_f32(ws, wl)?, outputs, inputs),
            &mut dx,
            false,
        );
        Ok((CpuStorage::F32(dx), Shape::from((n, inputs))))
    }
}

/// `(dY, x) → dYᵀ·x`, in the weight's `[out, in]` layout.
struct WeightGrad;

impl CustomOp2 for WeightGrad {
    fn name(&self) -> &'static str {
        "linear-weight-grad"
    }

    fn cpu_fwd(
        &self,
        gs: &CpuStorage,
        gl: &Layout,
        xs: &CpuStorage,
        xl: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let (n, outputs) = gl.shape().dims2()?;
        let inputs = xl.shape().dims2()?.1;
        let mut dw = vec![0.0; outputs * inputs];
        let dy = Mat::row_major(contiguous_f32(gs, gl)?, n, outputs);
        matmul(
            dy.t(),
            Mat::row_major(contiguous_f32(xs, xl)?, n, inputs),
            &mut dw,
            false,
        );
        Ok((CpuStorage::F32(dw), Shape::from((outputs, inputs))))
    }
}

/// `dY → Σₙ dY`, accumulated in f64.
struct BiasGrad;

impl CustomOp1 for BiasGrad {
    fn name(&self) -> &'static str {
        "linear-bias-grad"
    }

    fn cpu_fwd(&self, gs: &CpuStorage, gl: &Layout) -> Result<(CpuStorage, Shape)> {
        let (n, outputs) = gl.shape().dims2()?;
        let dy = contiguous_f32(gs, gl)?;
        let db = (0..outputs)
            .into_par_iter()
            .map(|o| (0..n).map(|i| f64::from(dy[i * outputs + o])).sum::<f64>() as f32)
            .collect();
        Ok((CpuStorage::F32(db), Shape::from(outputs)))
    }
}
