//! `vgg convert IN OUT`: between the checkpoint formats we read and write (.pth in both
//! torch formats and safetensors in; safetensors and zip .pth out).

use std::path::PathBuf;

use clap::{Args, ValueEnum};

use candle_core::{Device, Tensor};
use vgg::error::Result;
use vgg::weights::load::load;
use vgg::weights::{self, StateDict, detect::detect_config, names::to_timm};

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
    /// Write the dense (fully convolutional) form's state_dict, paper §3.2: the same keys,
    /// the classifier's weights as convolutions (fc6 `[4096, 512, 7, 7]`, fc7 and fc8 1×1),
    /// for an `nn.Sequential(OrderedDict(features=…, classifier=…))` of convolutions
    #[arg(long, conflicts_with = "names")]
    pub dense: bool,
}

pub fn run(args: &ConvertArgs) -> Result<String> {
    vgg::io::check_output(&args.output)?;
    let state = weights::read(&args.input)?;
    let format = state.format;
    let tensors = match args.names {
        _ if args.dense => dense_state_dict(state)?,
        Naming::Torchvision => state.tensors,
        Naming::Timm => to_timm(&state.tensors, detect_config(&state.shapes())?.pool())?,
    };
    weights::write(&args.output, &tensors)?;
    Ok(format!(
        "{} ({}) -> {}: {} tensors\n",
        args.input.display(),
        format.describe(),
        args.output.display(),
        tensors.len()
    ))
}

/// The dense form's state_dict of the checkpoint's model (loaded strictly first).
fn dense_state_dict(state: StateDict) -> Result<Vec<(String, Tensor)>> {
    let config = detect_config(&state.shapes())?;
    let (model, _) = load(config, state, true, 0, &Device::Cpu)?;
    model.dense()?.state_dict()
}
