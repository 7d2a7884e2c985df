//! The compiled training plan: a VGG is a straight chain, so a training step needs no
//! general autograd graph. Like the inference plan, it is compiled from the layer list:
//! activations live in NHWC buffers that are allocated once and reused every step, each
//! ReLU is fused into the convolution, batch norm or linear layer before it (and its
//! backward mask into the max-pool after it), and every parameter gradient is written in
//! place into one tensor per parameter, with no zero-fill and accumulate.
//!
//! It covers the CPU and the layers of torchvision's VGGs and of custom configs with
//! torchvision's head (convolution, batch norm, ReLU, max-pool, adaptive average pool,
//! flatten, linear, dropout); [`TrainPlan::new`] returns `None` for anything else, which
//! then trains through candle's autograd. Both paths compute the same functions: the
//! same dropout masks, batch statistics and running averages, PyTorch's max-pool and
//! ReLU gradients, and sums whose order depends on the shapes only, never on the thread
//! count.

mod conv;
mod dense;
mod norm;
mod pool;

use std::collections::HashMap;

use candle_core::backprop::GradStore;
use candle_core::{Tensor, TensorId};

use crate::engine::{PaddedShape, nchw_to_nhwc};
use crate::error::{Error, Result};
use crate::model::Vgg;
use crate::model::layers::{LayerKind, logits_len, propagate_shapes};
use crate::ops::with_f32_values;
use crate::train::fused::overwrite;
use crate::train::loss::cross_entropy;
use crate::train::optim::Gradients;
use norm::BatchStats;

/// An NHWC activation's shape: `n` images of `h×w` pixels with `c` channels each.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Nhwc {
    n: usize,
    h: usize,
    w: usize,
    c: usize,
}

impl Nhwc {
    fn pixels(self) -> usize {
        self.n * self.h * self.w
    }

    fn len(self) -> usize {
        self.pixels() * self.c
    }

    /// The shape after a 2×2 stride-2 max-pool.
    fn pooled(self) -> Nhwc {
        Nhwc {
            h: self.h / 2,
            w: self.w / 2,
            ..self
        }
    }

    fn with_channels(self, c: usize) -> Nhwc {
        Nhwc { c, ..self }
    }

    /// The engine's description of this layout: its channel stride is the channel count
    /// (the engine pads to 16 lanes; the plan's kernels do not need it).
    fn unpadded(self) -> PaddedShape {
        let Nhwc { n, h, w, c } = self;
        PaddedShape { n, h, w, c, cp: c }
    }
}

/// What one step of the plan holds: a feature map, or `[n][features]` rows.
#[derive(Clone, Copy, Debug)]
enum Shape {
    Map(Nhwc),
    Rows { n: usize, features: usize },
}

impl Shape {
    fn len(self) -> usize {
        match self {
            Shape::Map(s) => s.len(),
            Shape::Rows { n, features } => n * features,
        }
    }

    /// The shape of `n` images whose layer output is `chw` (`[C, H, W]` or `[features]`),
    /// as the layer list computes it.
    fn of(n: usize, chw: &[usize]) -> Shape {
        match *chw {
            [c, h, w] => Shape::Map(Nhwc { n, h, w, c }),
            _ => Shape::Rows {
                n,
                features: chw.iter().product(),
            },
        }
    }
}

/// One operation of the chain; `layer` indexes the model's layer list, `relu` marks a
/// fused ReLU after the operation.
#[derive(Clone, Copy, Debug)]
enum Op {
    Conv { layer: usize, relu: bool },
    Norm { layer: usize, eps: f64, relu: bool },
    Relu,
    MaxPool,
    PoolFlatten { out: usize },
    Linear { layer: usize, relu: bool },
    Dropout { p: f64 },
}

impl Op {
    /// Whether its output is a ReLU's (so a max-pool after it can apply the ReLU mask).
    fn ends_in_relu(self) -> bool {
        matches!(
            self,
            Op::Relu
                | Op::Conv { relu: true, .. }
                | Op::Norm { relu: true, .. }
                | Op::Linear { relu: true, .. }
        )
    }

    /// Whether it rewrites its input buffer rather than filling a new one.
    fn in_place(self) -> bool {
        matches!(self, Op::Relu | Op::Dropout { .. })
    }
}

/// The ops of `model`'s chain up to its logits, each with the last layer it computes
/// (whose output shape, in the layer list, is the op's), or `None` when a layer is not
/// covered.
fn compile(model: &Vgg) -> Option<Vec<(Op, usize)>> {
    let layers = model.layers();
    let end = logits_len(layers);
    let mut ops: Vec<(Op, usize)> = Vec::new();
    let mut index = 0;
    while index < end {
        let op = match layers[index].kind {
            LayerKind::Conv2d { .. } => Op::Conv {
                layer: index,
                relu: false,
            },
            LayerKind::BatchNorm2d { eps, .. } => Op::Norm {
                layer: index,
                eps,
                relu: false,
            },
            LayerKind::ReLU => match ops.last_mut() {
                Some((
                    Op::Conv { relu, .. } | Op::Norm { relu, .. } | Op::Linear { relu, .. },
                    last,
                )) if !*relu => {
                    (*relu, *last) = (true, index);
                    index += 1;
                    continue;
                }
                _ => Op::Relu,
            },
            LayerKind::MaxPool2d => Op::MaxPool,
            LayerKind::AdaptiveAvgPool2d { output }
                if layers.get(index + 1).map(|l| l.kind) == Some(LayerKind::Flatten) =>
            {
                index += 1;
                Op::PoolFlatten { out: output }
            }
            LayerKind::Linear { .. } => Op::Linear {
                layer: index,
                relu: false,
            },
            LayerKind::Dropout { p: 0.0 } => {
                index += 1;
                continue;
            }
            LayerKind::Dropout { p } => Op::Dropout { p },
            _ => return None,
        };
        ops.push((op, index));
        index += 1;
    }
    Some(ops)
}

/// What a step keeps from the forward pass for the backward pass.
#[derive(Default)]
struct Saved {
    stats: BatchStats,
    winners: Vec<u8>,
    mask: Vec<f32>,
}

/// One op at the current input size: its shapes and buffers (0 is the network's input,
/// `i + 1` the output of op `i`; an in-place op's output is its input's buffer).
#[derive(Clone, Copy, Debug)]
struct Step {
    op: Op,
    input: Shape,
    output: Shape,
    src: usize,
    dst: usize,
}

/// The gradients of the last [`TrainPlan::step`], one tensor per parameter, rewritten
/// in place every step.
pub struct PlanGradients {
    by_param: HashMap<TensorId, Tensor>,
}

impl PlanGradients {
    /// Runs `write` on the gradients of a layer's `weight` and `bias`, in place.
    fn write(
        &self,
        weight: &Tensor,
        bias: &Tensor,
        write: impl FnOnce((&mut [f32], &mut [f32])),
    ) -> Result<()> {
        let of = |param: &Tensor| {
            self.by_param.get(&param.id()).ok_or_else(|| {
                Error::BadArgument("a parameter the training plan does not know".into())
            })
        };
        let (dw, db) = (of(weight)?, of(bias)?);
        overwrite(dw, |dw| overwrite(db, |db| write((dw, db))))?
    }
}

impl Gradients for PlanGradients {
    fn gradient(&self, param: &Tensor) -> Option<&Tensor> {
        self.by_param.get(&param.id())
    }

    fn scale(&mut self, param: &Tensor, factor: f64) -> Result<()> {
        if let Some(grad) = self.by_param.get(&param.id()) {
            let factor = factor as f32;
            overwrite(grad, |g| g.iter_mut().for_each(|v| *v *= factor))?;
        }
        Ok(())
    }
}

/// A training step's results besides the gradients.
pub struct StepOutput {
    /// The mean loss over the batch.
    pub loss: f64,
    /// The logits `[N, classes]`.
    pub logits: Tensor,
}

/// A compiled training step for one model (see the module documentation).
pub struct TrainPlan {
    /// The chain's ops, each with the last layer it computes.
    ops: Vec<(Op, usize)>,
    /// The input dims `[N, C, H, W]` the steps and buffers are laid out for.
    dims: [usize; 4],
    steps: Vec<Step>,
    buffers: Vec<Vec<f32>>,
    saved: Vec<Saved>,
    /// The gradient flowing backward, and the one being computed from it (each as long as
    /// the largest activation; an op uses the first `len` values).
    grad: Vec<f32>,
    next_grad: Vec<f32>,
    conv_work: conv::ConvWork,
    grads: PlanGradients,
}

impl TrainPlan {
    /// The plan for `model`, or `None` when it cannot run it: not on the CPU, or a layer
    /// it does not cover (batch norm or softmax in the head, the dense form).
    pub fn new(model: &Vgg) -> Result<Option<TrainPlan>> {
        if !model.device().is_cpu() {
            return Ok(None);
        }
        let Some(ops) = compile(model) else {
            return Ok(None);
        };
        let mut by_param = HashMap::new();
        for (op, _) in &ops {
            if let Op::Conv { layer, .. } | Op::Norm { layer, .. } | Op::Linear { layer, .. } = *op
                && let Some((weight, bias)) = model.layer_params(layer)
            {
                for param in [weight, bias] {
                    by_param.insert(param.id(), param.as_tensor().zeros_like()?);
                }
            }
        }
        Ok(Some(TrainPlan {
            saved: ops.iter().map(|_| Saved::default()).collect(),
            ops,
            dims: [0; 4],
            steps: Vec::new(),
            buffers: Vec::new(),
            grad: Vec::new(),
            next_grad: Vec::new(),
            conv_work: conv::ConvWork::default(),
            grads: PlanGradients { by_param },
        }))
    }

    /// The gradients of the last step.
    pub fn gradients(&mut self) -> &mut PlanGradients {
        &mut self.grads
    }

    /// One training step's forward and backward pass on the NCHW batch `x` with class
    /// `targets`: updates the batch norms' running statistics (as a training-mode forward
    /// pass does) and leaves every parameter's gradient in [`Self::gradients`].
    pub fn step(
        &mut self,
        model: &Vgg,
        x: &Tensor,
        targets: &[u32],
        smoothing: f64,
    ) -> Result<StepOutput> {
        let (n, c, h, w) = x.dims4()?;
        if targets.len() != n {
            return Err(Error::BadArgument(format!(
                "{} targets for a batch of {n}",
                targets.len()
            )));
        }
        self.lay_out(model, [n, c, h, w])?;
        let input = Nhwc { n, h, w, c };
        with_f32_values(x, |values| {
            nchw_to_nhwc(values, input.unpadded(), &mut self.buffers[0])
        })?;
        for i in 0..self.steps.len() {
            self.forward(model, i)?;
        }
        let last = self.steps.last().expect("a plan has ops");
        let Shape::Rows { features, .. } = last.output else {
            return Err(Error::BadArgument(
                "the network does not end in logits".into(),
            ));
        };
        let logits = &self.buffers[last.dst][..n * features];
        let dlogits = &mut self.grad[..logits.len()];
        let loss = dense::cross_entropy(logits, targets, smoothing, dlogits);
        let logits = Tensor::from_slice(logits, (n, features), model.device())?;
        for i in (0..self.steps.len()).rev() {
            self.backward(model, i)?;
        }
        Ok(StepOutput { loss, logits })
    }

    /// Shapes and buffers for input `dims` (kept while the dims stay the same).
    fn lay_out(&mut self, model: &Vgg, dims: [usize; 4]) -> Result<()> {
        if self.dims == dims {
            return Ok(());
        }
        let [n, c, h, w] = dims;
        let shapes = propagate_shapes(model.config(), model.layers(), [c, h, w])?;
        let mut shape = Shape::Map(Nhwc { n, h, w, c });
        let mut buffer = 0;
        let mut lens = vec![shape.len()];
        self.steps.clear();
        for (i, &(op, last)) in self.ops.iter().enumerate() {
            let output = Shape::of(n, &shapes[last].output);
            let dst = if op.in_place() { buffer } else { i + 1 };
            lens.push(if op.in_place() { 0 } else { output.len() });
            self.steps.push(Step {
                op,
                input: shape,
                output,
                src: buffer,
                dst,
            });
            (shape, buffer) = (output, dst);
        }
        let largest = lens.iter().copied().max().unwrap_or(0);
        self.buffers = lens.into_iter().map(|len| vec![0.0; len]).collect();
        self.grad = vec![0.0; largest];
        self.next_grad = vec![0.0; largest];
        self.dims = dims;
        Ok(())
    }

    fn forward(&mut self, model: &Vgg, i: usize) -> Result<()> {
        let step = self.steps[i];
        let saved = &mut self.saved[i];
        if step.op.in_place() {
            let y = &mut self.buffers[step.dst];
            match step.op {
                Op::Dropout { p } => {
                    saved.mask = model.dropout_mask(y.len(), p);
                    dense::scale_by(y, &saved.mask);
                }
                _ => dense::relu_in_place(y),
            }
            return Ok(());
        }
        let (before, after) = self.buffers.split_at_mut(step.dst);
        let (x, y) = (&before[step.src][..], &mut after[0][..]);
        match step.op {
            Op::Conv { layer, relu } => {
                let s = map(step.input);
                let (weight, bias) = params(model, layer)?;
                let work = &mut self.conv_work;
                with_f32_values(weight, |w| {
                    with_f32_values(bias, |b| conv::convolve((x, s), (w, b), relu, y, work))
                })??;
            }
            Op::Norm { layer, eps, relu } => {
                let s = map(step.input);
                check_batch_norm_count(s)?;
                norm::statistics(x, s.c, eps, &mut saved.stats);
                let (weight, bias) = params(model, layer)?;
                with_f32_values(weight, |w| {
                    with_f32_values(bias, |b| norm::normalise(x, &saved.stats, (w, b), relu, y))
                })??;
                let stats = &saved.stats;
                let device = model.device();
                let mean = Tensor::from_slice(&stats.mean, s.c, device)?;
                let var = Tensor::from_slice(&stats.var, s.c, device)?;
                model.record_batch_statistics(layer, &mean, &var, s.pixels())?;
            }
            Op::MaxPool => {
                let s = map(step.input);
                saved.winners.resize(step.output.len(), 0);
                pool::max_pool(x, s, y, &mut saved.winners);
            }
            Op::PoolFlatten { out } => pool::pool_flatten(x, map(step.input), out, y),
            Op::Linear { layer, relu } => {
                let n = rows(step.input);
                let (weight, bias) = params(model, layer)?;
                with_f32_values(weight, |w| {
                    with_f32_values(bias, |b| dense::linear(x, n, (w, b), relu, y))
                })??;
            }
            Op::Relu | Op::Dropout { .. } => unreachable!("in-place ops return above"),
        }
        Ok(())
    }

    /// Turns the gradient of op `i`'s output (in `self.grad`) into its input's, writing
    /// the op's parameter gradients on the way.
    fn backward(&mut self, model: &Vgg, i: usize) -> Result<()> {
        let step = self.steps[i];
        let pool_masks = self
            .steps
            .get(i + 1)
            .is_some_and(|next| matches!(next.op, Op::MaxPool));
        let relu_mask = (step.op.ends_in_relu() && !pool_masks).then_some(step.dst);
        if let Some(y) = relu_mask
            && !matches!(step.op, Op::Norm { .. })
        {
            dense::relu_grad(&mut self.grad[..step.output.len()], &self.buffers[y]);
        }
        let x = &self.buffers[step.src];
        let saved = &self.saved[i];
        let dy = &self.grad[..step.output.len()];
        let dx = &mut self.next_grad[..step.input.len()];
        match step.op {
            Op::Relu => return Ok(()),
            Op::Dropout { .. } => {
                dense::scale_by(&mut self.grad[..step.output.len()], &saved.mask);
                return Ok(());
            }
            Op::Conv { layer, .. } => {
                let (weight, bias) = params(model, layer)?;
                let dx = (i > 0).then_some(dx);
                let work = &mut self.conv_work;
                with_f32_values(weight, |w| {
                    self.grads.write(weight, bias, |grads| {
                        conv::backward((x, map(step.input)), dy, w, grads, dx, work);
                    })
                })??;
            }
            Op::Norm { layer, .. } => {
                let (weight, bias) = params(model, layer)?;
                let dy = &mut self.grad[..step.output.len()];
                let dy = (dy, relu_mask.map(|y| &self.buffers[y][..]));
                with_f32_values(weight, |w| {
                    self.grads.write(weight, bias, |grads| {
                        norm::backward(x, dy, &saved.stats, w, dx, grads);
                    })
                })??;
            }
            Op::MaxPool => {
                let prev_relu = i > 0 && self.steps[i - 1].op.ends_in_relu();
                let mask = prev_relu.then_some(&x[..]);
                pool::max_pool_grad(dy, map(step.input), &saved.winners, mask, dx);
            }
            Op::PoolFlatten { out } => pool::pool_flatten_grad(dy, map(step.input), out, dx),
            Op::Linear { layer, .. } => {
                let n = rows(step.input);
                let (weight, bias) = params(model, layer)?;
                self.grads.write(weight, bias, |(dw, db)| {
                    dense::linear_param_grads(x, dy, n, dw, db);
                })?;
                if i > 0 {
                    let outputs = bias.elem_count();
                    with_f32_values(weight, |w| dense::linear_input_grad(dy, n, w, outputs, dx))?;
                }
            }
        }
        std::mem::swap(&mut self.grad, &mut self.next_grad);
        Ok(())
    }
}

fn map(shape: Shape) -> Nhwc {
    match shape {
        Shape::Map(s) => s,
        Shape::Rows { .. } => unreachable!("the plan's shapes were checked when laid out"),
    }
}

fn rows(shape: Shape) -> usize {
    match shape {
        Shape::Rows { n, .. } => n,
        Shape::Map(_) => unreachable!("the plan's shapes were checked when laid out"),
    }
}

fn params(model: &Vgg, layer: usize) -> Result<(&Tensor, &Tensor)> {
    model
        .layer_params(layer)
        .map(|(w, b)| (w.as_tensor(), b.as_tensor()))
        .ok_or_else(|| Error::BadArgument(format!("layer {layer} has no parameters")))
}

fn check_batch_norm_count(s: Nhwc) -> Result<()> {
    crate::model::check_batch_norm_count(&[s.n, s.c, s.h, s.w], s.pixels())
}

/// Where a training step leaves its gradients: candle's autograd store, or the plan's
/// tensors.
pub enum StepGradients<'a> {
    Autograd(GradStore),
    Plan(&'a mut PlanGradients),
}

impl Gradients for StepGradients<'_> {
    fn gradient(&self, param: &Tensor) -> Option<&Tensor> {
        match self {
            StepGradients::Autograd(store) => store.gradient(param),
            StepGradients::Plan(plan) => plan.gradient(param),
        }
    }

    fn scale(&mut self, param: &Tensor, factor: f64) -> Result<()> {
        match self {
            StepGradients::Autograd(store) => store.scale(param, factor),
            StepGradients::Plan(plan) => plan.scale(param, factor),
        }
    }
}

/// One training step's forward and backward pass on the NCHW batch `x` with class
/// `targets`: through `plan` when there is one, else through candle's autograd on the
/// logits that `forward` computes. Returns the mean loss, the logits and the gradients.
pub fn forward_backward<'a>(
    plan: Option<&'a mut TrainPlan>,
    model: &Vgg,
    (x, targets): (&Tensor, &[u32]),
    smoothing: f64,
    forward: impl FnOnce(&Tensor) -> Result<Tensor>,
) -> Result<(f64, Tensor, StepGradients<'a>)> {
    if let Some(plan) = plan {
        let out = plan.step(model, x, targets, smoothing)?;
        return Ok((out.loss, out.logits, StepGradients::Plan(plan.gradients())));
    }
    let logits = forward(x)?;
    let y = Tensor::from_slice(targets, targets.len(), x.device())?;
    let loss = cross_entropy(&logits, &y, smoothing)?;
    let value = f64::from(loss.to_scalar::<f32>()?);
    Ok((value, logits, StepGradients::Autograd(loss.backward()?)))
}
