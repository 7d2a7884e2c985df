//! The VGG network on candle: one module per [`LayerSpec`], run in order. This is the
//! reference path (and the autograd path for training); `engine` owns the fast CPU path.

use std::ops::Range;
use std::sync::Mutex;
use std::sync::atomic::{AtomicI64, Ordering};

use candle_core::{DType, Device, Tensor, Var};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::error::{Error, Result};
use crate::model::config::VggConfig;
use crate::model::footprint::{self, Work};
use crate::model::init::{Init, init_values};
use crate::model::layers::{
    Form, LayerKind, LayerSpec, TensorRole, TensorSpec, build_layers, build_layers_in, logits_len,
    propagate_shapes,
};
use crate::ops::tensor_pool::adaptive_avg_pool2d;
use crate::ops::{self, conv3x3, linear, max_pool2x2, relu};

/// Forward-pass mode, as `model.train()` / `model.eval()` in PyTorch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Dropout off, batch norm uses running statistics.
    Eval,
    /// Dropout on, batch norm uses batch statistics and updates its running statistics.
    Train,
}

/// Weight and bias of a convolution or linear layer.
struct Affine {
    weight: Var,
    bias: Var,
}

struct BatchNorm {
    weight: Var,
    bias: Var,
    running_mean: Var,
    running_var: Var,
    num_batches_tracked: AtomicI64,
}

/// The tensors of one layer (`Stateless` for ReLU, pools, flatten and dropout).
enum Module {
    Conv2d(Affine),
    BatchNorm2d(BatchNorm),
    Linear(Affine),
    Stateless,
}

impl Module {
    /// Its tensors in the order of [`LayerKind::tensors`], which names them.
    fn tensors(&self, device: &Device) -> Result<Vec<Tensor>> {
        Ok(match self {
            Module::Conv2d(a) | Module::Linear(a) => {
                vec![a.weight.as_detached_tensor(), a.bias.as_detached_tensor()]
            }
            Module::BatchNorm2d(bn) => vec![
                bn.weight.as_detached_tensor(),
                bn.bias.as_detached_tensor(),
                bn.running_mean.as_detached_tensor(),
                bn.running_var.as_detached_tensor(),
                Tensor::new(bn.num_batches_tracked.load(Ordering::Relaxed), device)?,
            ],
            Module::Stateless => Vec::new(),
        })
    }

    /// Its trainable tensors, in the order of [`LayerKind::tensors`]' parameters.
    fn parameters(&self) -> Vec<Var> {
        match self {
            Module::Conv2d(a) | Module::Linear(a) => vec![a.weight.clone(), a.bias.clone()],
            Module::BatchNorm2d(bn) => vec![bn.weight.clone(), bn.bias.clone()],
            Module::Stateless => Vec::new(),
        }
    }

    /// The same tensors, for a second view of the network (its dense form).
    fn share(&self) -> Module {
        let affine = |a: &Affine| Affine {
            weight: a.weight.clone(),
            bias: a.bias.clone(),
        };
        match self {
            Module::Conv2d(a) => Module::Conv2d(affine(a)),
            Module::Linear(a) => Module::Linear(affine(a)),
            Module::BatchNorm2d(bn) => Module::BatchNorm2d(BatchNorm {
                weight: bn.weight.clone(),
                bias: bn.bias.clone(),
                running_mean: bn.running_mean.clone(),
                running_var: bn.running_var.clone(),
                num_batches_tracked: AtomicI64::new(bn.num_batches_tracked.load(Ordering::Relaxed)),
            }),
            Module::Stateless => Module::Stateless,
        }
    }
}

/// A VGG network: its config, its layer list, and one candle module per layer.
pub struct Vgg {
    config: VggConfig,
    form: Form,
    layers: Vec<LayerSpec>,
    modules: Vec<Module>,
    device: Device,
    dropout_rng: Mutex<StdRng>,
}

impl Vgg {
    /// A new network with torchvision's initialisation; the same seed gives the same weights
    /// (and the same dropout masks in training).
    pub fn new(config: VggConfig, seed: u64, device: &Device) -> Result<Self> {
        Self::with_init(config, Init::Torchvision, seed, device)
    }

    /// A new network initialised by `init` (see [`Init`]), from `seed`.
    pub fn with_init(config: VggConfig, init: Init, seed: u64, device: &Device) -> Result<Self> {
        Self::build(config, seed, device, |layer, key, spec| {
            let values = init_values(init, &layer.kind, spec, seed, key);
            Ok(Var::from_vec(values, spec.shape.as_slice(), device)?.into_inner())
        })
    }

    /// A network whose every tensor comes from `tensor_for(layer, key, spec)` (the spec's
    /// shape is checked; any float or integer dtype is converted to f32). An f32 tensor
    /// created as a variable (`Var::…().into_inner()`) is adopted without a copy, so it then
    /// shares its storage with the model.
    pub fn build(
        config: VggConfig,
        seed: u64,
        device: &Device,
        mut tensor_for: impl FnMut(&LayerSpec, &str, &TensorSpec) -> Result<Tensor>,
    ) -> Result<Self> {
        footprint::check_weights(&config)?;
        let layers = build_layers(&config);
        let modules = layers
            .iter()
            .map(|layer| {
                let mut vars = layer
                    .named_tensors()
                    .into_iter()
                    .map(|(key, spec)| {
                        let t = tensor_for(layer, &key, &spec)?;
                        if t.dims() != spec.shape.as_slice() {
                            return Err(Error::ShapeMismatch {
                                key,
                                expected: spec.shape.clone(),
                                got: t.dims().to_vec(),
                            });
                        }
                        let t = t.to_dtype(DType::F32)?;
                        Ok(Var::from_tensor(&t.to_device(device)?)?)
                    })
                    .collect::<Result<Vec<Var>>>()?
                    .into_iter();
                let mut next = || vars.next().expect("named_tensors gives every tensor");
                Ok(match layer.kind {
                    LayerKind::Conv2d { .. } | LayerKind::FcConv { .. } => Module::Conv2d(Affine {
                        weight: next(),
                        bias: next(),
                    }),
                    LayerKind::Linear { .. } => Module::Linear(Affine {
                        weight: next(),
                        bias: next(),
                    }),
                    LayerKind::BatchNorm2d { .. } | LayerKind::BatchNorm1d { .. } => {
                        let (weight, bias, running_mean, running_var) =
                            (next(), next(), next(), next());
                        let tracked = next().as_tensor().to_dtype(DType::F64)?;
                        Module::BatchNorm2d(BatchNorm {
                            weight,
                            bias,
                            running_mean,
                            running_var,
                            num_batches_tracked: AtomicI64::new(tracked.to_scalar::<f64>()? as i64),
                        })
                    }
                    _ => Module::Stateless,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Vgg {
            config,
            form: Form::Standard,
            layers,
            modules,
            device: device.clone(),
            dropout_rng: Mutex::new(StdRng::seed_from_u64(seed)),
        })
    }

    /// The network's dense (fully convolutional) form, paper §3.2: the same weights with the
    /// classifier's linear layers reshaped into convolutions, so that any input at least the
    /// native size gives a class score map `[N, classes, h, w]`. At the native size the map is
    /// 1×1 and equals the standard forward's logits.
    pub fn dense(&self) -> Result<Vgg> {
        let layers = build_layers_in(&self.config, Form::Dense);
        let mut sources = self.layers.iter().zip(&self.modules).filter(|(layer, _)| {
            !matches!(
                layer.kind,
                LayerKind::AdaptiveAvgPool2d { .. } | LayerKind::Flatten
            )
        });
        let modules = layers
            .iter()
            .map(|layer| {
                let (_, module) = sources.next().expect("both forms list the same modules");
                Ok(match (layer.kind, module) {
                    (LayerKind::FcConv { .. }, Module::Linear(a)) => {
                        let shape = &layer.kind.tensors()[0].shape;
                        Module::Conv2d(Affine {
                            weight: Var::from_tensor(
                                &a.weight.as_tensor().reshape(shape.as_slice())?,
                            )?,
                            bias: a.bias.clone(),
                        })
                    }
                    (_, module) => module.share(),
                })
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Vgg {
            config: self.config.clone(),
            form: Form::Dense,
            layers,
            modules,
            device: self.device.clone(),
            dropout_rng: Mutex::new(StdRng::seed_from_u64(0)),
        })
    }

    /// A second handle to the same network: its tensors are shared, not copied (a change
    /// through one is seen by the other); the dropout generator is its own.
    pub fn share(&self) -> Vgg {
        Vgg {
            config: self.config.clone(),
            form: self.form,
            layers: self.layers.clone(),
            modules: self.modules.iter().map(Module::share).collect(),
            device: self.device.clone(),
            dropout_rng: Mutex::new(StdRng::seed_from_u64(0)),
        }
    }

    pub fn form(&self) -> Form {
        self.form
    }

    /// Restarts the dropout masks from `seed`: a trainer reseeds per epoch, so a run resumed
    /// from a checkpoint draws the same masks as one that never stopped.
    pub fn reseed_dropout(&self, seed: u64) {
        let mut rng = self.dropout_rng.lock().unwrap_or_else(|e| e.into_inner());
        *rng = StdRng::seed_from_u64(seed);
    }

    pub fn config(&self) -> &VggConfig {
        &self.config
    }

    pub fn layers(&self) -> &[LayerSpec] {
        &self.layers
    }

    pub fn device(&self) -> &Device {
        &self.device
    }

    /// Every state_dict entry, in torchvision's order and with its key names. Float tensors
    /// are f32; `num_batches_tracked` is a 0-dim i64, as PyTorch stores it.
    pub fn state_dict(&self) -> Result<Vec<(String, Tensor)>> {
        let mut entries = Vec::new();
        for (layer, module) in self.layers.iter().zip(&self.modules) {
            let path = layer.path();
            let tensors = module.tensors(&self.device)?;
            let names = layer.kind.tensors().into_iter().map(|spec| spec.name);
            entries.extend(names.zip(tensors).map(|(n, t)| (format!("{path}.{n}"), t)));
        }
        Ok(entries)
    }

    /// The learnable parameters with their keys, for optimisers.
    pub fn parameters(&self) -> Vec<(String, Var)> {
        let mut params = Vec::new();
        for (layer, module) in self.layers.iter().zip(&self.modules) {
            let path = layer.path();
            let names = (layer.kind.tensors().into_iter())
                .filter(|spec| spec.role == TensorRole::Parameter)
                .map(|spec| spec.name);
            params.extend(
                names
                    .zip(module.parameters())
                    .map(|(n, v)| (format!("{path}.{n}"), v)),
            );
        }
        params
    }

    /// Runs the whole network on an NCHW batch: its outputs `[N, num_classes]` (logits, or
    /// probabilities when the head ends with a softmax).
    pub fn forward(&self, x: &Tensor, mode: Mode) -> Result<Tensor> {
        self.forward_to(x, mode, None)
    }

    /// The logits `[N, num_classes]`: the whole network but a final softmax. What losses
    /// and gradients are taken of.
    pub fn logits(&self, x: &Tensor, mode: Mode) -> Result<Tensor> {
        self.check_input(x)?;
        self.forward_range(x, mode, 0..logits_len(&self.layers))
    }

    /// Runs the network up to and including the module at `last` (`features.10`, `avgpool`,
    /// `classifier.3`…), or to the end when `last` is `None`.
    pub fn forward_to(&self, x: &Tensor, mode: Mode, last: Option<&str>) -> Result<Tensor> {
        let end = match last {
            Some(name) => self.layer_index(name)? + 1,
            None => self.layers.len(),
        };
        self.check_input(x)?;
        self.forward_range(x, mode, 0..end)
    }

    /// Runs the layers at indices `range` on `x`, the output of layer `range.start − 1`:
    /// consecutive ranges continue one pass, keeping the activations in between.
    pub fn forward_range(&self, x: &Tensor, mode: Mode, range: Range<usize>) -> Result<Tensor> {
        if range.start > range.end || range.end > self.layers.len() {
            return Err(Error::BadArgument(format!(
                "layers {range:?} are not a range of {}'s {} layers",
                self.config.name(),
                self.layers.len()
            )));
        }
        let mut x = x.clone();
        for index in range {
            x = self.apply(index, &x, mode)?;
        }
        Ok(x)
    }

    /// The outputs of the modules called `names` (any order, as forward hooks would see
    /// them), from one pass that stops at the last of them.
    pub fn forward_taps(&self, x: &Tensor, mode: Mode, names: &[&str]) -> Result<Vec<Tensor>> {
        self.check_input(x)?;
        let mut order: Vec<(usize, usize)> = names
            .iter()
            .enumerate()
            .map(|(i, name)| Ok((self.layer_index(name)?, i)))
            .collect::<Result<_>>()?;
        order.sort_unstable();
        let mut outputs = vec![None; names.len()];
        let (mut x, mut done) = (x.clone(), 0);
        for (layer, slot) in order {
            if layer + 1 > done {
                x = self.forward_range(&x, mode, done..layer + 1)?;
                done = layer + 1;
            }
            outputs[slot] = Some(x.clone());
        }
        Ok(outputs.into_iter().flatten().collect())
    }

    /// Index of the module called `name` in the layer list.
    pub fn layer_index(&self, name: &str) -> Result<usize> {
        self.layers
            .iter()
            .position(|l| l.is_module() && l.path() == name)
            .ok_or_else(|| {
                let names: Vec<String> = self
                    .layers
                    .iter()
                    .filter(|l| l.is_module())
                    .map(LayerSpec::path)
                    .collect();
                Error::BadArgument(format!(
                    "no module `{name}` in {}; modules: {}",
                    self.config.name(),
                    names.join(", ")
                ))
            })
    }

    fn check_input(&self, x: &Tensor) -> Result<()> {
        let [n, c, h, w] = super::nchw(x.dims())?;
        footprint::check(&self.config, [n, c, h, w], Work::Inference, String::new)?;
        if self.form == Form::Dense {
            propagate_shapes(&self.config, &self.layers, [c, h, w])?;
        }
        ops::with_f32_values(x, crate::model::check_finite)?
    }

    fn apply(&self, index: usize, x: &Tensor, mode: Mode) -> Result<Tensor> {
        let (layer, module) = (&self.layers[index], &self.modules[index]);
        let train = mode == Mode::Train;
        Ok(match (&layer.kind, module) {
            (LayerKind::Conv2d { .. }, Module::Conv2d(a)) => conv3x3(x, &a.weight, &a.bias)?,
            (&LayerKind::BatchNorm2d { eps, .. }, Module::BatchNorm2d(bn)) if train => {
                self.batch_norm_train(index, bn, x, eps)?
            }
            (&LayerKind::BatchNorm2d { eps, .. }, Module::BatchNorm2d(bn)) => {
                let mean = bn.running_mean.as_tensor();
                let var = bn.running_var.as_tensor();
                normalise(x, mean, var, bn, eps)?
            }
            (&LayerKind::BatchNorm1d { eps, .. }, Module::BatchNorm2d(bn)) => {
                // `[N, F]` as `[N, F, 1, 1]`: BatchNorm1d's statistics are BatchNorm2d's.
                let x4 = x.unsqueeze(2)?.unsqueeze(3)?;
                let y = if train {
                    self.batch_norm_train(index, bn, &x4, eps)?
                } else {
                    let mean = bn.running_mean.as_tensor();
                    normalise(&x4, mean, bn.running_var.as_tensor(), bn, eps)?
                };
                y.flatten_from(1)?
            }
            (LayerKind::Softmax, _) => candle_nn::ops::softmax(x, 1)?,
            (LayerKind::ReLU, _) => relu(x)?,
            (LayerKind::MaxPool2d, _) => max_pool2x2(x)?,
            (&LayerKind::AdaptiveAvgPool2d { output }, _) => {
                adaptive_avg_pool2d(x, output, output)?
            }
            (LayerKind::Flatten, _) => x.flatten_from(1)?,
            (LayerKind::Linear { .. }, Module::Linear(a)) => linear(x, &a.weight, &a.bias)?,
            (LayerKind::FcConv { .. }, Module::Conv2d(a)) => {
                let bias = a.bias.as_tensor().reshape((1, (), 1, 1))?;
                x.conv2d(a.weight.as_tensor(), 0, 1, 1, 1)?
                    .broadcast_add(&bias)?
            }
            (&LayerKind::Dropout { p }, _) if train && p > 0.0 => self.dropout(x, p)?,
            (LayerKind::Dropout { .. }, _) => x.clone(),
            _ => unreachable!("modules are built from the same layer list"),
        })
    }

    /// Training-mode batch norm: normalise with the batch's mean and biased variance, then
    /// update the running statistics.
    fn batch_norm_train(
        &self,
        index: usize,
        bn: &BatchNorm,
        x: &Tensor,
        eps: f64,
    ) -> Result<Tensor> {
        let (n, _, h, w) = x.dims4()?;
        let count = n * h * w;
        check_batch_norm_count(x.dims(), count)?;
        let (y, mean, var) = ops::batch_norm_train(x, &bn.weight, &bn.bias, eps)?;
        self.record_batch_statistics(index, &mean.detach(), &var.detach(), count)?;
        Ok(y)
    }

    /// Inverted dropout, as `nn.Dropout`: zero with probability p, scale the rest by 1/(1−p).
    /// Masks come from the model's seeded generator so training runs are reproducible.
    fn dropout(&self, x: &Tensor, p: f64) -> Result<Tensor> {
        let mask = self.dropout_mask(x.elem_count(), p);
        let mask = Tensor::from_vec(mask, x.shape(), x.device())?.to_dtype(x.dtype())?;
        Ok((x * mask)?)
    }

    /// The next `len` factors of inverted dropout from the model's generator: 0 with
    /// probability p, 1/(1−p) otherwise. The autograd path and the compiled training plan
    /// both draw here, so they apply the same masks.
    pub(crate) fn dropout_mask(&self, len: usize, p: f64) -> Vec<f32> {
        let scale = (1.0 / (1.0 - p)) as f32;
        let mut rng = self.dropout_rng.lock().unwrap_or_else(|e| e.into_inner());
        (0..len)
            .map(|_| if rng.random::<f64>() < p { 0.0 } else { scale })
            .collect()
    }

    /// The weight and bias of layer `index` (a convolution, linear layer or batch norm).
    pub(crate) fn layer_params(&self, index: usize) -> Option<(&Var, &Var)> {
        match self.modules.get(index)? {
            Module::Conv2d(a) | Module::Linear(a) => Some((&a.weight, &a.bias)),
            Module::BatchNorm2d(bn) => Some((&bn.weight, &bn.bias)),
            Module::Stateless => None,
        }
    }

    /// Folds one training batch's statistics (`[C]` mean and biased variance over `count`
    /// values per channel) into batch norm `index`'s running averages, as PyTorch does.
    pub(crate) fn record_batch_statistics(
        &self,
        index: usize,
        mean: &Tensor,
        var: &Tensor,
        count: usize,
    ) -> Result<()> {
        let (Some(Module::BatchNorm2d(bn)), Some(layer)) =
            (self.modules.get(index), self.layers.get(index))
        else {
            return Err(Error::BadArgument(format!(
                "layer {index} is not a batch norm"
            )));
        };
        let (LayerKind::BatchNorm2d { momentum, .. } | LayerKind::BatchNorm1d { momentum, .. }) =
            layer.kind
        else {
            return Err(Error::BadArgument(format!(
                "layer {index} is not a batch norm"
            )));
        };
        let unbiased = (var * (count as f64 / (count - 1) as f64))?;
        let blend = |running: &Var, batch: &Tensor| -> Result<()> {
            let updated = ((running.as_tensor() * (1.0 - momentum))? + (batch * momentum)?)?;
            Ok(running.set(&updated)?)
        };
        blend(&bn.running_mean, mean)?;
        blend(&bn.running_var, &unbiased)?;
        bn.num_batches_tracked.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }
}

/// `(x − mean) / sqrt(var + eps) · weight + bias`, per channel of an NCHW tensor.
fn normalise(x: &Tensor, mean: &Tensor, var: &Tensor, bn: &BatchNorm, eps: f64) -> Result<Tensor> {
    let per_channel = |t: &Tensor| t.reshape((1, (), 1, 1));
    let inv_std = (var + eps)?.sqrt()?.recip()?;
    let scale = (inv_std * bn.weight.as_tensor())?;
    Ok(x.broadcast_sub(&per_channel(mean)?)?
        .broadcast_mul(&per_channel(&scale)?)?
        .broadcast_add(&per_channel(bn.bias.as_tensor())?)?)
}

/// Refuses a training-mode batch norm over `count` < 2 values per channel (input `dims`):
/// its variance would be undefined.
pub(crate) fn check_batch_norm_count(dims: &[usize], count: usize) -> Result<()> {
    if count < 2 {
        return Err(Error::BadArgument(format!(
            "batch norm in training mode needs more than 1 value per channel, got input \
             {dims:?} (use a batch of at least 2, or eval mode)"
        )));
    }
    Ok(())
}
