//! The adapter between the model and the engine: the layer list plus weights (from a
//! checkpoint read tensor by tensor, or from a reference model) become a compiled engine
//! [`Plan`] for one input shape, taking tensors the way the rest of the crate passes them.

mod network;

use std::collections::HashMap;

use candle_core::{Device, Tensor};

use crate::engine::quant::Int8Ranges;
use crate::engine::{EngineError, NetworkSpec, Plan, PlanOptions, Precision};
use crate::error::{Error, Result};
use crate::fast::network::network_spec;
use crate::limits::Held;
use crate::model::footprint::{self, Work};
use crate::model::layers::{Form, LayerKind, build_layers, build_layers_in, propagate_shapes};
use crate::model::{Vgg, VggConfig};
use crate::weights::LazyPth;
use crate::weights::recorded::Int8Calibration;

/// How to compile: the plan's options, and for [`Precision::Int8`] the calibration that says
/// which layers compute in int8 and their input ranges.
#[derive(Clone, Debug, Default)]
pub struct FastOptions {
    pub plan: PlanOptions,
    pub int8: Option<Int8Calibration>,
}

impl From<PlanOptions> for FastOptions {
    fn from(plan: PlanOptions) -> Self {
        FastOptions { plan, int8: None }
    }
}

/// A VGG network compiled for the fast CPU path at a fixed `[N, C, H, W]` input shape.
pub struct FastVgg {
    config: VggConfig,
    input: [usize; 4],
    plan: Plan,
    /// The plan's memory, counted against the budget while it lives.
    held: Held,
}

impl FastVgg {
    /// Compiles `config` reading each tensor from a `.pth` file only when the engine needs
    /// it: peak memory is the engine's own weights plus one tensor.
    pub fn from_pth(
        config: VggConfig,
        checkpoint: &LazyPth,
        input: [usize; 4],
        options: impl Into<FastOptions>,
    ) -> Result<Self> {
        let spec = |config: &VggConfig| network_spec(config, |key| checkpoint.read_f32(key));
        Self::compile(config, input, options.into(), spec)
    }

    /// Compiles a copy of a reference model's weights (e.g. freshly initialised).
    pub fn from_model(
        model: &Vgg,
        input: [usize; 4],
        options: impl Into<FastOptions>,
    ) -> Result<Self> {
        Self::compile(model.config().clone(), input, options.into(), |_| {
            model_spec(model)
        })
    }

    /// Checks the request, then builds the network with `spec` (which reads the weights) and
    /// compiles it.
    fn compile(
        config: VggConfig,
        input: [usize; 4],
        options: FastOptions,
        spec: impl FnOnce(&VggConfig) -> Result<NetworkSpec>,
    ) -> Result<Self> {
        let [n, c, h, w] = input;
        let mut held = Held::default();
        footprint::hold(&mut held, &config, input, Work::Inference, String::new)?;
        if options.plan.dense {
            check_dense_input(&config, [c, h, w])?;
        }
        let int8 = match (options.plan.precision, &options.int8) {
            (Precision::Int8, None) => {
                return Err(Error::BadArgument(
                    "--precision int8 needs calibrated activation ranges (`vgg quantize`, or \
                     --calib DIR)"
                        .into(),
                ));
            }
            (Precision::Int8, Some(calibration)) => Some(int8_ranges(&config, calibration)?),
            _ => None,
        };
        let spec = NetworkSpec {
            int8,
            ..spec(&config)?
        };
        let plan = Plan::with_options(spec, n, c, h, w, options.plan)?;
        Ok(FastVgg {
            config,
            input,
            plan,
            held,
        })
    }

    pub fn config(&self) -> &VggConfig {
        &self.config
    }

    /// The input shape this plan was compiled for.
    pub fn input_shape(&self) -> [usize; 4] {
        self.input
    }

    /// Logits `[N, num_classes]` for an NCHW batch of exactly the compiled shape (a dense
    /// plan: the score map `[N, num_classes, h, w]`).
    pub fn forward(&mut self, x: &Tensor) -> Result<Tensor> {
        if x.dims() != self.input {
            return Err(Error::BadArgument(format!(
                "the engine was compiled for input {:?}, got {:?}",
                self.input,
                x.dims()
            )));
        }
        let input = to_vec(x)?;
        let logits = self.forward_slice(&input)?;
        let (n, classes) = (self.input[0], self.config.num_classes());
        Ok(match self.plan.score_map_size() {
            Some((h, w)) => Tensor::from_vec(logits, (n, classes, h, w), &Device::Cpu)?,
            None => Tensor::from_vec(logits, (n, classes), &Device::Cpu)?,
        })
    }

    /// The class score map `[N, classes, h, w]` (flat, and its `h`, `w`) of a dense plan
    /// for an NCHW batch of `height × width` images: the plan follows each new size,
    /// keeping its weights (the paper's dense evaluation sees each image at its own size).
    pub fn score_map(
        &mut self,
        input: &[f32],
        height: usize,
        width: usize,
    ) -> Result<(Vec<f32>, usize, usize)> {
        let [n, c, h, w] = self.input;
        if [h, w] != [height, width] {
            let shape = [n, c, height, width];
            check_dense_input(&self.config, [c, height, width])?;
            let config = &self.config;
            footprint::hold(&mut self.held, config, shape, Work::Inference, String::new)?;
            self.plan.set_input_size(height, width)?;
            self.input = shape;
        }
        let Some((map_h, map_w)) = self.plan.score_map_size() else {
            return Err(Error::BadArgument(
                "score maps come from the dense form; compile with PlanOptions::dense".into(),
            ));
        };
        Ok((self.forward_slice(input)?, map_h, map_w))
    }

    /// Outputs for a flat NCHW input, row-major `[N, num_classes]` (a dense plan: the
    /// score map): logits, or probabilities when the head ends with a softmax.
    pub fn forward_slice(&mut self, input: &[f32]) -> Result<Vec<f32>> {
        crate::model::check_finite(input)?;
        let mut out = vec![0.0; self.plan.output_len()];
        (self.plan.run(input, &mut out)).map_err(|e| with_layer_path(&self.config, e))?;
        let hint = "the reference engine, `--engine reference`, does not fold the average \
                    pool into the first linear layer, whose sums then grow less, and may hold \
                    them";
        crate::model::check_outputs(&out, "the fast engine's", hint)?;
        if self.config.outputs_probabilities() {
            let spatial = self.plan.score_map_size().map_or(1, |(h, w)| h * w);
            softmax_over_classes(&mut out, self.config.num_classes(), spatial);
        }
        Ok(out)
    }

    /// The number format the engine computes in.
    pub fn precision(&self) -> crate::engine::Precision {
        self.plan.precision()
    }

    /// Which algorithm each layer uses, for `vgg bench`.
    pub fn describe(&self) -> String {
        self.plan.describe()
    }
}

/// The engine's `error` as the library's, the layer it concerns (the engine counts its
/// convolutions) named by its path in `config`'s layer list.
pub(crate) fn with_layer_path(config: &VggConfig, error: EngineError) -> Error {
    match error {
        EngineError::Overflow {
            conv, input_max, ..
        } => {
            let mut convs = (build_layers(config).into_iter())
                .filter(|l| matches!(l.kind, LayerKind::Conv2d { .. }));
            EngineError::Overflow {
                conv,
                layer: convs.nth(conv).map(|l| l.path()),
                input_max,
            }
            .into()
        }
        other => other.into(),
    }
}

/// The engine's description of a model's network, with a copy of its weights.
pub fn model_spec(model: &Vgg) -> Result<NetworkSpec> {
    let mut tensors: HashMap<String, Tensor> = model.state_dict()?.into_iter().collect();
    network_spec(model.config(), |key| {
        to_vec(
            &tensors
                .remove(key)
                .expect("a model's state_dict has every key"),
        )
    })
}

/// The engine's per-position ranges of a calibration recorded by module path: the layer
/// list gives each convolution's and linear layer's path, in the engine's order. A
/// calibration made for another network (a layer it does not record, or one this model
/// does not have) is refused: its ranges would silently leave layers in f32.
pub fn int8_ranges(config: &VggConfig, calibration: &Int8Calibration) -> Result<Int8Ranges> {
    let (convs, linears) = layer_paths(config);
    calibration
        .check_layers(convs.iter().chain(&linears).map(String::as_str))
        .map_err(|why| {
            Error::BadArgument(format!(
                "--precision int8: the calibration does not describe this {} network: {why}; \
                 calibrate it with `vgg quantize` or --calib DIR",
                config.name()
            ))
        })?;
    let ranges = |paths: Vec<String>| paths.iter().map(|p| calibration.int8_range(p)).collect();
    Ok(Int8Ranges {
        convs: ranges(convs),
        linears: ranges(linears),
    })
}

/// The module path of each convolution, then of each linear layer, in the engine's order.
pub fn layer_paths(config: &VggConfig) -> (Vec<String>, Vec<String>) {
    let (mut convs, mut linears) = (Vec::new(), Vec::new());
    for layer in build_layers(config) {
        match layer.kind {
            LayerKind::Conv2d { .. } => convs.push(layer.path()),
            LayerKind::Linear { .. } => linears.push(layer.path()),
            _ => {}
        }
    }
    (convs, linears)
}

/// Refuses, with the layer list's message, an input the dense form cannot slide fc6 over.
fn check_dense_input(config: &VggConfig, chw: [usize; 3]) -> Result<()> {
    propagate_shapes(config, &build_layers_in(config, Form::Dense), chw).map(|_| ())
}

/// Softmax over the classes of `[N, classes, spatial]` scores, in place, as
/// `nn.Softmax(dim=1)`: per image and position, `exp(x − max) / Σ exp(x − max)`.
fn softmax_over_classes(scores: &mut [f32], classes: usize, spatial: usize) {
    for image in scores.chunks_mut(classes * spatial) {
        for position in 0..spatial {
            let at = |class: usize| class * spatial + position;
            let max = (0..classes).map(|c| image[at(c)]).fold(f32::MIN, f32::max);
            let mut sum = 0.0;
            for c in 0..classes {
                image[at(c)] = (image[at(c)] - max).exp();
                sum += image[at(c)];
            }
            (0..classes).for_each(|c| image[at(c)] /= sum);
        }
    }
}

fn to_vec(tensor: &Tensor) -> Result<Vec<f32>> {
    Ok(tensor
        .to_dtype(candle_core::DType::F32)?
        .flatten_all()?
        .to_vec1::<f32>()?)
}
