//! Model selection shared by the commands that run a network: `--arch` (a torchvision name,
//! `custom`, or `auto` to detect from the weights), the custom-config flags, `--weights`.

use std::path::PathBuf;

use candle_core::Device;
use clap::Args;

use crate::cli::args::ModelArgs;
use crate::cli::bench::Engine;
use vgg::engine::PlanOptions;
use vgg::error::{Error, Result};
use vgg::fast::FastVgg;
use vgg::infer::Backend;
use vgg::model::{Vgg, VggConfig};
use vgg::weights::load::{LoadReport, check};
use vgg::weights::{self, LazyPth, Shapes, detect::detect_config};

#[derive(Debug, Clone, Args)]
pub struct ModelSource {
    /// vgg11 … vgg19_bn, custom (with --cfg), or auto (detect from --weights)
    #[arg(long, default_value = "auto")]
    pub arch: String,
    #[command(flatten)]
    pub model: ModelArgs,
    /// Checkpoint: torchvision .pth (zip or legacy) or safetensors; random weights if absent
    #[arg(long, value_name = "FILE")]
    pub weights: Option<PathBuf>,
    /// Load what fits and initialise the rest, instead of failing on any difference
    #[arg(long)]
    pub non_strict: bool,
    /// Seed for the initialisation of whatever is not loaded, and for dropout
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
}

impl ModelSource {
    /// The model, and the load report when weights were given.
    pub fn build(&self, device: &Device) -> Result<(Vgg, Option<LoadReport>)> {
        let Some(path) = &self.weights else {
            if self.arch == "auto" {
                return Err(Error::BadArgument(
                    "--arch auto detects the arch from --weights; give --weights FILE or a named \
                     --arch (vgg11 … vgg19_bn, custom)"
                        .into(),
                ));
            }
            let config = self.model.config(&self.arch)?;
            return Ok((Vgg::new(config, self.seed, device)?, None));
        };
        let state = weights::read(path)?;
        let config = self.config_for(&state.shapes())?;
        let (model, report) =
            weights::load::load(config, state, !self.non_strict, self.seed, device)?;
        Ok((model, Some(report)))
    }

    /// The model compiled for the fast engine at `input`. Strict-fitting `.pth` files are
    /// read tensor by tensor straight into the engine; anything else goes through the
    /// reference model first.
    pub fn build_fast(&self, input: [usize; 4]) -> Result<(FastVgg, Option<LoadReport>)> {
        let options = PlanOptions::default();
        if let Some(path) = &self.weights
            && let Some(checkpoint) = LazyPth::open(path)?
        {
            let shapes = checkpoint.shapes();
            let config = self.config_for(&shapes)?;
            let report = check(&config, &shapes);
            if report.is_exact() {
                return Ok((
                    FastVgg::from_pth(config, &checkpoint, input, options)?,
                    Some(report),
                ));
            }
            if !self.non_strict {
                return Err(Error::mismatch(report));
            }
        }
        let (model, report) = self.build(&Device::Cpu)?;
        Ok((FastVgg::from_model(&model, input, options)?, report))
    }

    /// The backend `engine` names, compiled for `[batch, 3, size, size]` when fast.
    pub fn backend(&self, engine: Engine, batch: usize, size: usize) -> Result<Backend> {
        Ok(match engine {
            Engine::Fast => Backend::Fast(self.build_fast([batch, 3, size, size])?.0),
            Engine::Reference => Backend::Reference(self.build(&Device::Cpu)?.0),
        })
    }

    /// The config for a checkpoint with these tensors: detected (`--arch auto`) or named.
    pub(crate) fn config_for(&self, shapes: &Shapes) -> Result<VggConfig> {
        if self.arch == "auto" {
            self.with_overrides(detect_config(shapes)?)
        } else {
            self.model.config(&self.arch)
        }
    }

    /// A detected config with the user's explicit `--num-classes` / `--dropout` applied.
    fn with_overrides(&self, mut config: VggConfig) -> Result<VggConfig> {
        if self.model.cfg.is_some() || self.model.batch_norm {
            return Err(Error::BadArgument(
                "--cfg / --batch-norm describe a custom network; with --arch auto the layout \
                 comes from the weights"
                    .into(),
            ));
        }
        config.num_classes = self.model.num_classes.unwrap_or(config.num_classes);
        config.dropout = self.model.dropout.unwrap_or(config.dropout);
        config.validate()?;
        Ok(config)
    }
}
