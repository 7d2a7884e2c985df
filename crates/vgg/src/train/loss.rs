//! The training objective and its guards: cross-entropy with label smoothing (as
//! `F.cross_entropy(label_smoothing=ε)`), gradient-norm clipping (as
//! `clip_grad_norm_`), and top-k counting for the metrics.

use candle_core::{D, Tensor, Var};

use crate::error::Result;
use crate::train::optim::Gradients;

/// Mean cross-entropy of `logits` `[N, K]` against class indices `targets` `[N]` (u32), with
/// label smoothing ε: `(1 − ε) · NLL + ε · mean over classes of −log p`.
pub fn cross_entropy(logits: &Tensor, targets: &Tensor, smoothing: f64) -> Result<Tensor> {
    let log_probs = candle_nn::ops::log_softmax(logits, D::Minus1)?;
    let nll = log_probs
        .gather(&targets.unsqueeze(1)?, 1)?
        .neg()?
        .mean_all()?;
    if smoothing == 0.0 {
        return Ok(nll);
    }
    let uniform = log_probs.mean(D::Minus1)?.neg()?.mean_all()?;
    Ok(((nll * (1.0 - smoothing))? + (uniform * smoothing)?)?)
}

/// Scales the gradients of `params` so that their joint L2 norm is at most `max_norm`
/// (`torch.nn.utils.clip_grad_norm_`, with its 1e-6 guard); returns the norm before.
pub fn clip_grad_norm(grads: &mut impl Gradients, params: &[Var], max_norm: f64) -> Result<f64> {
    let mut squares = 0.0f64;
    for param in params {
        if let Some(grad) = grads.gradient(param.as_tensor()) {
            squares += f64::from(grad.sqr()?.sum_all()?.to_scalar::<f32>()?);
        }
    }
    let norm = squares.sqrt();
    let coefficient = max_norm / (norm + 1e-6);
    if coefficient < 1.0 {
        for param in params {
            grads.scale(param.as_tensor(), coefficient)?;
        }
    }
    Ok(norm)
}

/// How many rows of `logits` (`[N, K]`, row-major) have their target among the `k`
/// largest: the target counts when fewer than `k` logits are strictly larger. A row with
/// a NaN ranks nothing (no comparison with NaN is true) and is a miss.
pub fn top_k_hits(logits: &[f32], classes: usize, targets: &[u32], k: usize) -> usize {
    logits
        .chunks_exact(classes)
        .zip(targets)
        .filter(|&(row, &target)| {
            let score = row[target as usize];
            !row.iter().any(|v| v.is_nan()) && row.iter().filter(|&&v| v > score).count() < k
        })
        .count()
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    #[test]
    fn top_k_counts_targets_among_the_largest() {
        let logits = [0.1, 0.7, 0.2, 0.9, 0.3, 0.05];
        assert_eq!(top_k_hits(&logits, 3, &[1, 1], 1), 1);
        assert_eq!(top_k_hits(&logits, 3, &[0, 2], 2), 0);
        assert_eq!(top_k_hits(&logits, 3, &[2, 1], 2), 2);
        assert_eq!(top_k_hits(&logits, 3, &[0, 2], 3), 2);
        let diverged = [f32::NAN, f32::NAN, 0.5];
        assert_eq!(top_k_hits(&diverged, 3, &[0], 1), 0);
        assert_eq!(top_k_hits(&diverged, 3, &[2], 3), 0);
    }

    #[test]
    fn clipping_scales_to_the_max_norm() -> Result<()> {
        let a = Var::from_vec(vec![1.0f32, 2.0], 2, &Device::Cpu)?;
        let b = Var::from_vec(vec![3.0f32], 1, &Device::Cpu)?;
        let loss = ((a.as_tensor().sqr()?.sum_all()? * 1.5)? + b.as_tensor().sum_all()?)?;
        let mut grads = loss.backward()?; // gradients (3, 6) and (1): norm √46
        let params = [a.clone(), b.clone()];
        let norm = clip_grad_norm(&mut grads, &params, 1.0)?;
        assert!((norm - 46f64.sqrt()).abs() < 1e-5);
        let clipped: Vec<f32> = grads.get(a.as_tensor()).unwrap().to_vec1()?;
        let scale = 1.0 / (46f64.sqrt() + 1e-6);
        assert!((f64::from(clipped[1]) - 6.0 * scale).abs() < 1e-6);
        let norm_after = clip_grad_norm(&mut grads, &params, 10.0)?;
        assert!((norm_after - norm * scale).abs() < 1e-5, "{norm_after}");
        Ok(())
    }
}
