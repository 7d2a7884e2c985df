//! Pooling with PyTorch's semantics, as candle tensor expressions (the reference model's
//! adaptive pool, and the max-pool fallback on devices our CPU ops do not cover). Adaptive average pooling, exactly as PyTorch defines its
//! bins: output cell `i` of `O` averages input indices `[floor(i·I/O), ceil((i+1)·I/O))` on
//! each axis. Bins may overlap, and may be wider than the input (I = 2, O = 7 replicates
//! values). Max-pooling whose gradient, like PyTorch's, goes to one maximum per window.

use candle_core::{Device, Tensor};

use crate::engine::adaptive_bin;
use crate::error::Result;

/// The pooling as a matrix `[output, input]`: row `i` holds 1/|bin| over bin `i`. Pooling
/// is linear and separable, so `P_h · X · P_wᵀ` pools an `H×W` map (and autograd follows).
pub fn pooling_matrix(input: usize, output: usize) -> Vec<f32> {
    let mut matrix = vec![0.0f32; output * input];
    for i in 0..output {
        let (start, end) = adaptive_bin(i, input, output);
        let weight = 1.0 / (end - start) as f32;
        matrix[i * input + start..i * input + end].fill(weight);
    }
    matrix
}

/// `nn.AdaptiveAvgPool2d((out_h, out_w))` on an NCHW tensor; the identity when sizes match.
pub fn adaptive_avg_pool2d(x: &Tensor, out_h: usize, out_w: usize) -> Result<Tensor> {
    let (_, _, h, w) = x.dims4()?;
    if (h, w) == (out_h, out_w) {
        return Ok(x.clone());
    }
    let matrix = |input, output, device: &Device| {
        Tensor::from_vec(pooling_matrix(input, output), (output, input), device)?
            .to_dtype(x.dtype())
    };
    let pool_w = matrix(w, out_w, x.device())?.t()?;
    let pool_h = matrix(h, out_h, x.device())?;
    Ok(pool_h.broadcast_matmul(&x.broadcast_matmul(&pool_w)?)?)
}

/// `nn.MaxPool2d(2, 2)` on an NCHW tensor (odd sizes floored), with PyTorch's gradient: all
/// of it to the first maximum of each window in row-major order. candle's `max_pool2d`
/// gives it to every tied maximum, and ReLU outputs tie at 0 all the time, so gradients
/// (Grad-CAM, training) would differ from PyTorch's. The values are candle's exactly.
pub fn max_pool2d(x: &Tensor) -> Result<Tensor> {
    let (n, c, h, w) = x.dims4()?;
    let (oh, ow) = (h / 2, w / 2);
    let windows = x
        .narrow(2, 0, 2 * oh)?
        .narrow(3, 0, 2 * ow)?
        .reshape((n, c, oh, 2, ow, 2))?
        .permute(vec![0, 1, 2, 4, 3, 5])?
        .reshape((n, c, oh, ow, 4))?;
    let first_max = windows.argmax_keepdim(4)?;
    Ok(windows.gather(&first_max, 4)?.squeeze(4)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// PyTorch's definition, cell by cell.
    fn reference(x: &[f32], h: usize, w: usize, oh: usize, ow: usize) -> Vec<f32> {
        let mut out = Vec::new();
        for i in 0..oh {
            for j in 0..ow {
                let ((h0, h1), (w0, w1)) = (adaptive_bin(i, h, oh), adaptive_bin(j, w, ow));
                let sum: f32 = (h0..h1)
                    .flat_map(|r| (w0..w1).map(move |c| (r, c)))
                    .map(|(r, c)| x[r * w + c])
                    .sum();
                out.push(sum / ((h1 - h0) * (w1 - w0)) as f32);
            }
        }
        out
    }

    #[test]
    fn bins_match_pytorch() {
        assert_eq!(adaptive_bin(0, 2, 7), (0, 1));
        assert_eq!(adaptive_bin(3, 2, 7), (0, 2));
        assert_eq!(adaptive_bin(6, 2, 7), (1, 2));
        assert_eq!(adaptive_bin(2, 10, 7), (2, 5));
    }

    #[test]
    fn matches_reference_for_odd_shapes() -> Result<()> {
        for (h, w, oh, ow) in [
            (2, 2, 7, 7),
            (3, 4, 7, 7),
            (10, 13, 7, 7),
            (7, 7, 7, 7),
            (5, 9, 1, 1),
        ] {
            let values: Vec<f32> = (0..h * w).map(|v| (v as f32 * 0.37).sin()).collect();
            let x = Tensor::from_vec(values.clone(), (1, 1, h, w), &Device::Cpu)?;
            let got = adaptive_avg_pool2d(&x, oh, ow)?
                .flatten_all()?
                .to_vec1::<f32>()?;
            let want = reference(&values, h, w, oh, ow);
            for (g, r) in got.iter().zip(&want) {
                assert!((g - r).abs() < 1e-6, "{h}x{w}->{oh}x{ow}: {g} vs {r}");
            }
        }
        Ok(())
    }

    #[test]
    fn max_pool_values_match_candle_and_ties_take_first_gradient() -> Result<()> {
        let values: Vec<f32> = (0..2 * 5 * 7).map(|v| (v as f32 * 0.91).sin()).collect();
        let x = Tensor::from_vec(values, (1, 2, 5, 7), &Device::Cpu)?;
        let ours = max_pool2d(&x)?.flatten_all()?.to_vec1::<f32>()?;
        let candle = x.max_pool2d(2)?.flatten_all()?.to_vec1::<f32>()?;
        assert_eq!(ours, candle);

        // One all-zero window (a ReLU output): PyTorch sends the gradient to its first cell.
        let x = candle_core::Var::from_vec(vec![0.0f32; 4], (1, 1, 2, 2), &Device::Cpu)?;
        let grads = max_pool2d(x.as_tensor())?.sum_all()?.backward()?;
        let grad = grads.get(x.as_tensor()).expect("x has a gradient");
        assert_eq!(grad.flatten_all()?.to_vec1::<f32>()?, [1.0, 0.0, 0.0, 0.0]);
        Ok(())
    }
}
