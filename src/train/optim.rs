//! Optimisers with `torch.optim` semantics, step for step: SGD (momentum, dampening,
//! Nesterov, weight decay) and AdamW. PyTorch's exact update order matters for matching its
//! weights after many steps, so each update below follows the order of `torch/optim/*.py`.

use candle_core::{Tensor, Var, backprop::GradStore};

use crate::error::Result;

/// `torch.optim.SGD` hyper-parameters.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SgdConfig {
    pub lr: f64,
    pub momentum: f64,
    pub dampening: f64,
    pub weight_decay: f64,
    pub nesterov: bool,
}

/// `torch.optim.SGD`: per parameter, `g += wd·p`; `buf = g` on the first step, else
/// `buf = μ·buf + (1 − dampening)·g`; `g = g + μ·buf` (Nesterov) or `g = buf`; `p −= lr·g`.
pub struct Sgd {
    pub config: SgdConfig,
    params: Vec<Var>,
    momentum: Vec<Option<Tensor>>,
}

impl Sgd {
    pub fn new(params: Vec<Var>, config: SgdConfig) -> Self {
        let momentum = vec![None; params.len()];
        Sgd {
            config,
            params,
            momentum,
        }
    }

    /// Applies one step from the gradients of the last `backward()`; parameters without a
    /// gradient (frozen, or unused) are left alone, as PyTorch skips `p.grad is None`.
    pub fn step(&mut self, grads: &GradStore) -> Result<()> {
        let c = self.config;
        for (param, buffer) in self.params.iter().zip(&mut self.momentum) {
            let Some(grad) = grads.get(param.as_tensor()) else {
                continue;
            };
            let mut g = grad.clone();
            if c.weight_decay != 0.0 {
                g = (g + (param.as_tensor() * c.weight_decay)?)?;
            }
            if c.momentum != 0.0 {
                let next = match buffer.take() {
                    None => g.clone(),
                    Some(previous) => ((previous * c.momentum)? + (&g * (1.0 - c.dampening))?)?,
                };
                g = if c.nesterov {
                    (g + (&next * c.momentum)?)?
                } else {
                    next.clone()
                };
                *buffer = Some(next);
            }
            param.set(&(param.as_tensor() - (g * c.lr)?)?)?;
        }
        Ok(())
    }

    /// The momentum buffers, for checkpoints (`None` before a parameter's first step).
    pub fn momentum_buffers(&self) -> &[Option<Tensor>] {
        &self.momentum
    }
}

/// `torch.optim.AdamW` hyper-parameters.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AdamWConfig {
    pub lr: f64,
    pub beta1: f64,
    pub beta2: f64,
    pub eps: f64,
    pub weight_decay: f64,
}

impl Default for AdamWConfig {
    fn default() -> Self {
        AdamWConfig {
            lr: 1e-3,
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            weight_decay: 1e-2,
        }
    }
}

/// `torch.optim.AdamW`: `p *= 1 − lr·wd`; moments; `p −= lr/(1−β₁ᵗ) · m / (√v/√(1−β₂ᵗ) + ε)`.
pub struct AdamW {
    pub config: AdamWConfig,
    params: Vec<Var>,
    moments: Vec<Option<(Tensor, Tensor)>>,
    step: i32,
}

impl AdamW {
    pub fn new(params: Vec<Var>, config: AdamWConfig) -> Self {
        let moments = vec![None; params.len()];
        AdamW {
            config,
            params,
            moments,
            step: 0,
        }
    }

    pub fn step(&mut self, grads: &GradStore) -> Result<()> {
        let c = self.config;
        self.step += 1;
        let correction1 = 1.0 - c.beta1.powi(self.step);
        let correction2_sqrt = (1.0 - c.beta2.powi(self.step)).sqrt();
        for (param, moments) in self.params.iter().zip(&mut self.moments) {
            let Some(g) = grads.get(param.as_tensor()) else {
                continue;
            };
            let decayed = (param.as_tensor() * (1.0 - c.lr * c.weight_decay))?;
            let (m, v) = match moments.take() {
                None => (g.zeros_like()?, g.zeros_like()?),
                Some(state) => state,
            };
            let m = ((m * c.beta1)? + (g * (1.0 - c.beta1))?)?;
            let v = ((v * c.beta2)? + (g.sqr()? * (1.0 - c.beta2))?)?;
            let denom = ((v.sqrt()? / correction2_sqrt)? + c.eps)?;
            let update = ((&m / denom)? * (c.lr / correction1))?;
            param.set(&(decayed - update)?)?;
            *moments = Some((m, v));
        }
        Ok(())
    }
}
