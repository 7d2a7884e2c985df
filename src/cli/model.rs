//! Model selection shared by the commands that run a network: `--arch` (a torchvision name,
//! `custom`, or `auto` to detect from the weights), the custom-config flags, `--weights`.
//! Parsing only: [`vgg::ModelSource`] does the opening.

use std::path::PathBuf;

use clap::{Args, ValueEnum};

use crate::cli::args::ModelArgs;
use vgg::ModelSource;
use vgg::engine::Precision;
use vgg::error::Result;
use vgg::infer::Engine;

#[derive(Debug, Clone, Args)]
pub struct ModelFlags {
    /// vgg11 … vgg19_bn, custom (with --cfg), or auto (detect from --weights)
    #[arg(long, default_value = "auto")]
    pub arch: String,
    #[command(flatten)]
    pub model: ModelArgs,
    /// Checkpoint: torchvision .pth (zip or legacy), safetensors or ONNX; random weights if absent
    #[arg(long, value_name = "FILE")]
    pub weights: Option<PathBuf>,
    /// Load what fits and initialise the rest, instead of failing on any difference
    #[arg(long)]
    pub non_strict: bool,
    /// Seed for the initialisation of whatever is not loaded, and for dropout
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
}

impl ModelFlags {
    /// The library's description of the model these flags name.
    pub fn source(&self) -> Result<ModelSource> {
        Ok(ModelSource {
            strict: !self.non_strict,
            seed: self.seed,
            ..self.model.source(&self.arch, self.weights.clone())?
        })
    }
}

/// `--engine`: which implementation runs the network.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum EngineFlag {
    /// Winograd convolutions, fused layers, folded batch norm and pooling
    Fast,
    /// The module-by-module model: our CPU ops (crates/vgg/src/ops) on candle tensors, as training runs them
    Reference,
}

/// `--precision`: parsed by the library, which holds the list of names.
pub fn parse_precision(text: &str) -> std::result::Result<Precision, String> {
    Precision::parse(text)
}

/// The engine `--engine` and `--precision` name together (bf16 is the fast engine's).
pub fn engine(flag: EngineFlag, precision: Precision) -> Result<Engine> {
    Engine::new(flag == EngineFlag::Fast, precision)
}
