//! Optimisers with `torch.optim` semantics, step for step: SGD (momentum, dampening,
//! Nesterov, weight decay) and AdamW. PyTorch's exact update order matters for matching its
//! weights after many steps, so each update below follows the order of `torch/optim/*.py`.

use std::collections::HashMap;

use candle_core::{Tensor, Var, backprop::GradStore};

use crate::error::Result;
use crate::train::fused;

/// Where an optimiser step finds each parameter's gradient: candle's autograd store, or
/// the buffers of the compiled training plan ([`crate::train::plan`]).
pub trait Gradients {
    /// The gradient of `param`, if it has one.
    fn gradient(&self, param: &Tensor) -> Option<&Tensor>;
    /// Multiplies the gradient of `param` (if any) by `factor`, for gradient clipping.
    fn scale(&mut self, param: &Tensor, factor: f64) -> Result<()>;
}

impl Gradients for GradStore {
    fn gradient(&self, param: &Tensor) -> Option<&Tensor> {
        self.get(param)
    }

    fn scale(&mut self, param: &Tensor, factor: f64) -> Result<()> {
        if let Some(grad) = self.remove(param) {
            self.insert(param, (grad * factor)?);
        }
        Ok(())
    }
}

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
    pub fn step(&mut self, grads: &impl Gradients) -> Result<()> {
        for (param, buffer) in self.params.iter().zip(&mut self.momentum) {
            let Some(grad) = grads.gradient(param.as_tensor()) else {
                continue;
            };
            if fused::supports(param) {
                sgd_fused(&self.config, param, grad, buffer)?;
            } else {
                sgd_tensors(&self.config, param, grad, buffer)?;
            }
        }
        Ok(())
    }
}

/// One SGD step for one parameter as a single in-place pass per tensor (CPU).
fn sgd_fused(c: &SgdConfig, param: &Var, grad: &Tensor, buffer: &mut Option<Tensor>) -> Result<()> {
    let (lr, wd, mu) = (c.lr as f32, c.weight_decay as f32, c.momentum as f32);
    let (keep, nesterov) = ((1.0 - c.dampening) as f32, c.nesterov);
    let decayed = move |g: f32, p: f32| if wd != 0.0 { g + wd * p } else { g };
    if c.momentum == 0.0 {
        return fused::update2(param, grad, |p, g| *p -= lr * decayed(g, *p));
    }
    let first = buffer.is_none();
    let buf = match buffer {
        Some(buf) => buf,
        None => buffer.insert(param.zeros_like()?),
    };
    fused::update3(buf, grad, param, |b, g, p| {
        let g = decayed(g, p);
        *b = if first { g } else { mu * *b + keep * g };
    })?;
    fused::update3(param, grad, buf, |p, g, b| {
        let g = decayed(g, *p);
        *p -= lr * if nesterov { g + mu * b } else { b };
    })
}

/// One SGD step for one parameter as tensor expressions (any device).
fn sgd_tensors(
    c: &SgdConfig,
    param: &Var,
    grad: &Tensor,
    buffer: &mut Option<Tensor>,
) -> Result<()> {
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
    Ok(())
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

    pub fn step(&mut self, grads: &impl Gradients) -> Result<()> {
        self.step += 1;
        let c = self.config;
        let correction = AdamCorrection {
            first: 1.0 - c.beta1.powi(self.step),
            second_sqrt: (1.0 - c.beta2.powi(self.step)).sqrt(),
        };
        for (param, moments) in self.params.iter().zip(&mut self.moments) {
            let Some(grad) = grads.gradient(param.as_tensor()) else {
                continue;
            };
            let (m, v) = match moments.take() {
                None => (
                    grad.zeros_like()?.contiguous()?,
                    grad.zeros_like()?.contiguous()?,
                ),
                Some(state) => state,
            };
            *moments = Some(if fused::supports(param) {
                adamw_fused(&c, correction, param, grad, m, v)?
            } else {
                adamw_tensors(&c, correction, param, grad, m, v)?
            });
        }
        Ok(())
    }
}

/// Adam's bias corrections at the current step: `1 − β₁ᵗ` and `√(1 − β₂ᵗ)`.
#[derive(Clone, Copy)]
struct AdamCorrection {
    first: f64,
    second_sqrt: f64,
}

/// One AdamW step for one parameter, in place (CPU).
fn adamw_fused(
    c: &AdamWConfig,
    k: AdamCorrection,
    param: &Var,
    grad: &Tensor,
    m: Tensor,
    v: Tensor,
) -> Result<(Tensor, Tensor)> {
    let (b1, b2, eps) = (c.beta1 as f32, c.beta2 as f32, c.eps as f32);
    let decay = (1.0 - c.lr * c.weight_decay) as f32;
    let (step_size, second_sqrt) = ((c.lr / k.first) as f32, k.second_sqrt as f32);
    fused::update2(&m, grad, |m, g| *m = b1 * *m + (1.0 - b1) * g)?;
    fused::update2(&v, grad, |v, g| *v = b2 * *v + (1.0 - b2) * (g * g))?;
    fused::update3(param, &m, &v, |p, m, v| {
        *p = *p * decay - step_size * (m / (v.sqrt() / second_sqrt + eps));
    })?;
    Ok((m, v))
}

/// One AdamW step for one parameter as tensor expressions (any device).
fn adamw_tensors(
    c: &AdamWConfig,
    k: AdamCorrection,
    param: &Var,
    g: &Tensor,
    m: Tensor,
    v: Tensor,
) -> Result<(Tensor, Tensor)> {
    let decayed = (param.as_tensor() * (1.0 - c.lr * c.weight_decay))?;
    let m = ((m * c.beta1)? + (g * (1.0 - c.beta1))?)?;
    let v = ((v * c.beta2)? + (g.sqr()? * (1.0 - c.beta2))?)?;
    let denom = ((v.sqrt()? / k.second_sqrt)? + c.eps)?;
    let update = ((&m / denom)? * (c.lr / k.first))?;
    param.set(&(decayed - update)?)?;
    Ok((m, v))
}

/// The optimiser a training run uses, with its state under PyTorch's names.
pub enum Optimizer {
    Sgd(Sgd),
    AdamW(AdamW),
}

impl Optimizer {
    pub fn step(&mut self, grads: &impl Gradients) -> Result<()> {
        match self {
            Optimizer::Sgd(sgd) => sgd.step(grads),
            Optimizer::AdamW(adamw) => adamw.step(grads),
        }
    }

    pub fn set_lr(&mut self, lr: f64) {
        match self {
            Optimizer::Sgd(sgd) => sgd.config.lr = lr,
            Optimizer::AdamW(adamw) => adamw.config.lr = lr,
        }
    }

    /// Steps taken (AdamW's bias-correction count; 0 for SGD, which keeps none).
    pub fn steps(&self) -> i32 {
        match self {
            Optimizer::Sgd(_) => 0,
            Optimizer::AdamW(adamw) => adamw.step,
        }
    }

    /// Every state tensor as `(key.momentum_buffer | key.exp_avg | key.exp_avg_sq, tensor)`,
    /// `keys` naming the parameters in the order the optimiser was given them.
    pub fn state(&self, keys: &[String]) -> Vec<(String, Tensor)> {
        let mut state = Vec::new();
        match self {
            Optimizer::Sgd(sgd) => {
                for (key, buffer) in keys.iter().zip(&sgd.momentum) {
                    if let Some(buffer) = buffer {
                        state.push((format!("{key}.momentum_buffer"), buffer.clone()));
                    }
                }
            }
            Optimizer::AdamW(adamw) => {
                for (key, moments) in keys.iter().zip(&adamw.moments) {
                    if let Some((m, v)) = moments {
                        state.push((format!("{key}.exp_avg"), m.clone()));
                        state.push((format!("{key}.exp_avg_sq"), v.clone()));
                    }
                }
            }
        }
        state
    }

    /// Restores what [`Optimizer::state`] saved (a parameter without saved state has not
    /// stepped yet, as after a frozen epoch).
    pub fn restore(
        &mut self,
        keys: &[String],
        state: &HashMap<String, Tensor>,
        steps: i32,
    ) -> Result<()> {
        let take = |name: String| -> Result<Option<Tensor>> {
            state
                .get(&name)
                .map(|t| Ok(t.contiguous()?.copy()?))
                .transpose()
        };
        match self {
            Optimizer::Sgd(sgd) => {
                for (key, buffer) in keys.iter().zip(&mut sgd.momentum) {
                    *buffer = take(format!("{key}.momentum_buffer"))?;
                }
            }
            Optimizer::AdamW(adamw) => {
                adamw.step = steps;
                for (key, moments) in keys.iter().zip(&mut adamw.moments) {
                    let m = take(format!("{key}.exp_avg"))?;
                    let v = take(format!("{key}.exp_avg_sq"))?;
                    *moments = m.zip(v);
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    /// Three steps of each path from the same start, with gradients that change per step.
    fn run_both(
        fused_step: impl Fn(&Var, &Tensor, &mut Option<Tensor>) -> Result<()>,
        tensor_step: impl Fn(&Var, &Tensor, &mut Option<Tensor>) -> Result<()>,
    ) -> Result<()> {
        let start: Vec<f32> = (0..300).map(|i| (i as f32 * 0.37).sin()).collect();
        let (a, b) = (
            Var::from_vec(start.clone(), (3, 100), &Device::Cpu)?,
            Var::from_vec(start, (3, 100), &Device::Cpu)?,
        );
        let (mut state_a, mut state_b) = (None, None);
        for step in 0..3 {
            let grad: Vec<f32> = (0..300).map(|i| ((i * 7 + step) as f32).cos()).collect();
            let grad = Tensor::from_vec(grad, (3, 100), &Device::Cpu)?;
            fused_step(&a, &grad, &mut state_a)?;
            tensor_step(&b, &grad, &mut state_b)?;
        }
        let diff = (a.as_tensor() - b.as_tensor())?.abs()?.max_all()?;
        assert!(diff.to_scalar::<f32>()? < 1e-6, "paths differ by {diff}");
        Ok(())
    }

    #[test]
    fn fused_sgd_equals_tensor_expressions() -> Result<()> {
        for (momentum, dampening, nesterov) in
            [(0.0, 0.0, false), (0.9, 0.1, false), (0.9, 0.0, true)]
        {
            let c = SgdConfig {
                lr: 0.1,
                momentum,
                dampening,
                weight_decay: 1e-2,
                nesterov,
            };
            run_both(
                |p, g, s| sgd_fused(&c, p, g, s),
                |p, g, s| sgd_tensors(&c, p, g, s),
            )?;
        }
        Ok(())
    }

    #[test]
    fn fused_adamw_equals_tensor_expressions() -> Result<()> {
        let c = AdamWConfig::default();
        let k = AdamCorrection {
            first: 0.1,
            second_sqrt: 0.05,
        };
        let step = |fused: bool| {
            move |p: &Var, g: &Tensor, state: &mut Option<Tensor>| -> Result<()> {
                let m = state.take().unwrap_or(g.zeros_like()?);
                let v = (&m * 0.5)?.abs()?;
                let (m, _) = if fused {
                    adamw_fused(&c, k, p, g, m, v)?
                } else {
                    adamw_tensors(&c, k, p, g, m, v)?
                };
                *state = Some(m);
                Ok(())
            }
        };
        run_both(step(true), step(false))
    }
}
