//! The adapter between the model and the engine: the layer list plus weights (from a
//! checkpoint read tensor by tensor, or from a reference model) become a compiled engine
//! [`Plan`] for one input shape, taking tensors the way the rest of the crate passes them.

mod network;

use std::collections::HashMap;

use candle_core::{Device, Tensor};

use crate::engine::{Plan, PlanOptions};
use crate::error::{Error, Result};
use crate::fast::network::network_spec;
use crate::model::footprint::{self, Work};
use crate::model::{Vgg, VggConfig};
use crate::weights::LazyPth;

/// A VGG network compiled for the fast CPU path at a fixed `[N, C, H, W]` input shape.
pub struct FastVgg {
    config: VggConfig,
    input: [usize; 4],
    plan: Plan,
}

impl FastVgg {
    /// Compiles `config` reading each tensor from a `.pth` file only when the engine needs
    /// it: peak memory is the engine's own weights plus one tensor.
    pub fn from_pth(
        config: VggConfig,
        checkpoint: &LazyPth,
        input: [usize; 4],
        options: PlanOptions,
    ) -> Result<Self> {
        Self::compile(config, input, options, |key| checkpoint.read_f32(key))
    }

    /// Compiles a copy of a reference model's weights (e.g. freshly initialised).
    pub fn from_model(model: &Vgg, input: [usize; 4], options: PlanOptions) -> Result<Self> {
        let mut tensors: HashMap<String, Tensor> = model.state_dict()?.into_iter().collect();
        Self::compile(model.config().clone(), input, options, |key| {
            to_vec(
                &tensors
                    .remove(key)
                    .expect("a model's state_dict has every key"),
            )
        })
    }

    fn compile(
        config: VggConfig,
        input: [usize; 4],
        options: PlanOptions,
        take: impl FnMut(&str) -> Result<Vec<f32>>,
    ) -> Result<Self> {
        let [n, c, h, w] = input;
        footprint::check(&config, input, Work::Inference, String::new)?;
        let spec = network_spec(&config, take)?;
        let plan = Plan::with_options(spec, n, c, h, w, options)?;
        Ok(FastVgg {
            config,
            input,
            plan,
        })
    }

    pub fn config(&self) -> &VggConfig {
        &self.config
    }

    /// The input shape this plan was compiled for.
    pub fn input_shape(&self) -> [usize; 4] {
        self.input
    }

    /// Logits `[N, num_classes]` for an NCHW batch of exactly the compiled shape.
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
        Ok(Tensor::from_vec(
            logits,
            (self.input[0], self.config.num_classes()),
            &Device::Cpu,
        )?)
    }

    /// Logits for a flat NCHW input, row-major `[N, num_classes]`.
    pub fn forward_slice(&mut self, input: &[f32]) -> Result<Vec<f32>> {
        crate::model::check_finite(input)?;
        let mut out = vec![0.0; self.input[0] * self.config.num_classes()];
        self.plan.run(input, &mut out)?;
        Ok(out)
    }

    /// Which algorithm each layer uses, for `vgg bench`.
    pub fn describe(&self) -> String {
        self.plan.describe()
    }
}

fn to_vec(tensor: &Tensor) -> Result<Vec<f32>> {
    Ok(tensor
        .to_dtype(candle_core::DType::F32)?
        .flatten_all()?
        .to_vec1::<f32>()?)
}
