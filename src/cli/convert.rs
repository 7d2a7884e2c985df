//! `vgg convert IN OUT`: between the checkpoint formats we read and write (.pth in both
//! torch formats and safetensors in; safetensors and zip .pth out).

use std::path::PathBuf;

use clap::{Args, ValueEnum};

use vgg::error::Result;
use vgg::weights::{self, detect::detect_config, names::to_timm};

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Naming {
    /// torchvision's keys (`classifier.0.weight`)
    Torchvision,
    /// timm's keys (`pre_logits.fc1.weight` as a conv weight, `head.fc`)
    Timm,
}

#[derive(Debug, Args)]
pub struct ConvertArgs {
    /// Input checkpoint: .pth (zip or legacy) or .safetensors
    pub input: PathBuf,
    /// Output file; the format follows the extension (.safetensors, or .pth / .pt as torch.save writes)
    pub output: PathBuf,
    /// Key names to write
    #[arg(long, value_enum, default_value_t = Naming::Torchvision)]
    pub names: Naming,
}

pub fn run(args: &ConvertArgs) -> Result<String> {
    vgg::io::check_output(&args.output)?;
    let state = weights::read(&args.input)?;
    let tensors = match args.names {
        Naming::Torchvision => state.tensors.clone(),
        Naming::Timm => to_timm(&state.tensors, detect_config(&state.shapes())?.pool())?,
    };
    weights::write(&args.output, &tensors)?;
    Ok(format!(
        "{} ({}) -> {}: {} tensors\n",
        args.input.display(),
        state.format.describe(),
        args.output.display(),
        tensors.len()
    ))
}
