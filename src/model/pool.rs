//! Adaptive average pooling, exactly as PyTorch defines its bins: output cell `i` of `O`
//! averages input indices `[floor(i·I/O), ceil((i+1)·I/O))` on each axis. Bins may overlap,
//! and may be wider than the input (I = 2, O = 7 replicates values).

use candle_core::{Device, Tensor};

use crate::error::Result;

/// The bin `[start, end)` of output cell `i` when pooling `input` cells to `output`.
pub fn adaptive_bin(i: usize, input: usize, output: usize) -> (usize, usize) {
    let start = i * input / output;
    let end = ((i + 1) * input).div_ceil(output);
    (start, end)
}

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
}
