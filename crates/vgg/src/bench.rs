//! Timing: forward passes on either path and optimisation steps, the measurement behind
//! `vgg bench` and the Python package's benchmark (comparisons with other runtimes live in
//! `scripts/`, run side by side, never in tests).

use std::time::Instant;

use candle_core::{Device, Tensor};

use crate::engine::{PlanOptions, Precision};
use crate::error::{Error, Result};
use crate::fast::{FastOptions, FastVgg};
use crate::infer::Engine;
use crate::model::footprint::{self, Work};
use crate::model::{Mode, Vgg};
use crate::quantize::CalibrationOptions;
use crate::summary::Summary;
use crate::train::optim::{Sgd, SgdConfig};
use crate::train::plan::{TrainPlan, forward_backward};
use crate::weights::recorded::Int8Calibration;

/// What to time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Workload {
    /// One forward pass on an engine, compiled with these options (in the engine's
    /// precision) when fast.
    Forward(Engine, PlanOptions),
    /// One optimisation step (training-mode forward, cross-entropy, backward, SGD with
    /// momentum) as `vgg train` runs it: on the compiled training plan where it covers the
    /// model, else through autograd.
    TrainingStep,
}

/// The times of `iters` runs after two warm-up runs.
#[derive(Debug, Clone)]
pub struct Timing {
    /// Seconds per run, in run order.
    pub seconds: Vec<f64>,
    /// Multiply-adds of one run (a training step counts three forward passes).
    pub macs: u64,
    pub batch: usize,
}

impl Timing {
    pub fn median(&self) -> f64 {
        let mut sorted = self.seconds.clone();
        sorted.sort_by(f64::total_cmp);
        sorted[((sorted.len() - 1) as f64 * 0.5).round() as usize]
    }

    pub fn min(&self) -> f64 {
        self.seconds.iter().copied().fold(f64::INFINITY, f64::min)
    }

    pub fn images_per_s(&self) -> f64 {
        self.batch as f64 / self.median()
    }

    pub fn gflops(&self) -> f64 {
        2.0 * self.macs as f64 / self.median() / 1e9
    }
}

/// Times `workload` on `model` at input `shape` (NCHW) with random data; `describe`
/// receives the fast engine's per-layer plan.
pub fn bench(
    model: Vgg,
    shape: [usize; 4],
    workload: Workload,
    iters: usize,
    describe: &mut dyn FnMut(String),
) -> Result<Timing> {
    if iters == 0 {
        return Err(Error::BadArgument("iterations must be at least 1".into()));
    }
    let [n, c, h, w] = shape;
    let work = match workload {
        Workload::TrainingStep => Work::Training,
        Workload::Forward(..) => Work::Inference,
    };
    footprint::check(model.config(), shape, work, String::new)?;
    let forward_macs = Summary::new(model.config(), n, [c, h, w], &[])?.total_macs();
    let x = Tensor::randn(0f32, 1.0, shape.as_slice(), &Device::Cpu)?;
    let (seconds, macs) = match workload {
        Workload::TrainingStep => (time_training(&model, &x, iters)?, 3 * forward_macs),
        Workload::Forward(Engine::Reference, _) => (
            time(iters, || model.forward(&x, Mode::Eval).map(drop))?,
            forward_macs,
        ),
        Workload::Forward(Engine::Fast(precision), options) => {
            let options = PlanOptions {
                precision,
                ..options
            };
            let input = x.flatten_all()?.to_vec1::<f32>()?;
            let options = FastOptions {
                plan: options,
                int8: match precision {
                    Precision::Int8 => Some(calibrate_on_input(&model, &input, shape)?),
                    _ => None,
                },
            };
            let mut fast = FastVgg::from_model(&model, shape, options)?;
            drop(model);
            describe(fast.describe());
            (
                time(iters, || fast.forward_slice(&input).map(drop))?,
                forward_macs,
            )
        }
    };
    Ok(Timing {
        seconds,
        macs,
        batch: n,
    })
}

/// An int8 calibration on the benchmark's own random input (random weights have none):
/// what int8 computes is then the real work, whatever the accuracy.
fn calibrate_on_input(
    model: &Vgg,
    input: &[f32],
    [n, _, h, w]: [usize; 4],
) -> Result<Int8Calibration> {
    let images: Vec<Vec<f32>> = input.chunks(input.len() / n).map(<[f32]>::to_vec).collect();
    let options = CalibrationOptions {
        batch: n,
        max_error: f64::INFINITY,
    };
    crate::quantize::calibrate(model, &images, [h, w], options, &crate::progress::Silent)
}

/// Seconds per optimisation step on labels `i % classes`.
fn time_training(model: &Vgg, x: &Tensor, iters: usize) -> Result<Vec<f64>> {
    crate::train::memory::keep_freed_memory();
    let classes = model.config().num_classes() as u32;
    let labels: Vec<u32> = (0..x.dim(0)? as u32).map(|i| i % classes).collect();
    let params = model.parameters().into_iter().map(|(_, v)| v).collect();
    let config = SgdConfig {
        lr: 1e-3,
        momentum: 0.9,
        dampening: 0.0,
        weight_decay: 5e-4,
        nesterov: false,
    };
    let mut sgd = Sgd::new(params, config);
    let mut plan = TrainPlan::new(model)?;
    time(iters, || {
        let forward = |x: &Tensor| model.logits(x, Mode::Train);
        let (_, _, grads) = forward_backward(plan.as_mut(), model, (x, &labels), 0.0, forward)?;
        sgd.step(&grads)
    })
}

/// Seconds per run over `iters` timed runs after two warm-up runs.
fn time(iters: usize, mut run: impl FnMut() -> Result<()>) -> Result<Vec<f64>> {
    for _ in 0..2 {
        run()?;
    }
    (0..iters)
        .map(|_| {
            let start = Instant::now();
            run()?;
            Ok(start.elapsed().as_secs_f64())
        })
        .collect()
}
