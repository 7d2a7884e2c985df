//! `vgg convert IN OUT`: between the checkpoint formats we read and write (.pth in both
//! torch formats, safetensors and ONNX in; safetensors, zip .pth and ONNX out).

use std::path::{Path, PathBuf};

use clap::{Args, ValueEnum};

use candle_core::{Device, Tensor};
use vgg::ModelSource;
use vgg::error::{Error, Result};
use vgg::weights::load::load;
use vgg::weights::recorded::Recorded;
use vgg::weights::{self, Shapes, StateDict, detect::detect_config_of, names::to_timm, onnx};

use crate::cli::args::parse_shape;

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Naming {
    /// torchvision's keys (`classifier.0.weight`)
    Torchvision,
    /// timm's keys (`pre_logits.fc1.weight` as a conv weight, `head.fc`)
    Timm,
}

#[derive(Debug, Args)]
pub struct ConvertArgs {
    /// Input checkpoint: .pth (zip or legacy), .safetensors or .onnx
    pub input: PathBuf,
    /// Output file; the format follows the extension (.safetensors, .pth / .pt as torch.save
    /// writes, or .onnx)
    pub output: PathBuf,
    /// Key names to write
    #[arg(long, value_enum, default_value_t = Naming::Torchvision)]
    pub names: Naming,
    /// Write the dense (fully convolutional) form's state_dict, paper §3.2: the same keys,
    /// the classifier's weights as convolutions (fc6 `[4096, 512, 7, 7]`, fc7 and fc8 1×1),
    /// for an `nn.Sequential(OrderedDict(features=…, classifier=…))` of convolutions
    #[arg(long, conflicts_with = "names")]
    pub dense: bool,
    /// ONNX: the input shape NxCxHxW (or CxHxW for batch 1) the graph is made for
    /// [default: 1×C×S×S, S the checkpoint's trained crop, else 224]
    #[arg(long, value_name = "SHAPE")]
    pub input_shape: Option<String>,
    /// ONNX: leave the batch dimension free (`batch`) instead of fixing it
    #[arg(long)]
    pub dynamic_batch: bool,
    /// ONNX: the opset to write (7 to 21) [default: 17]
    #[arg(long, allow_negative_numbers = true, value_name = "N")]
    pub opset: Option<i64>,
}

pub fn run(args: &ConvertArgs) -> Result<String> {
    vgg::io::check_output(&args.output, &[&args.input])?;
    let onnx = vgg::io::extension(&args.output).as_deref() == Some("onnx");
    check_flags(args, onnx)?;
    let state = weights::read(&args.input)?;
    let format = state.format;
    if onnx {
        return export(args, state);
    }
    // Only a config the file records: one detected from keys may be a guess.
    let recorded = Recorded {
        config: state.config.clone(),
        preprocess: weights::preprocess_to_carry(&args.input)?,
        classes: weights::recorded_class_names(&args.input)?,
        int8: weights::recorded_int8(&args.input)?,
    };
    let tensors = match args.names {
        _ if args.dense => dense_state_dict(&args.input, state)?,
        Naming::Torchvision => state.tensors,
        Naming::Timm => to_timm(
            &state.tensors,
            &detect_config_of(&args.input, &state.shapes())?,
        )?,
    };
    let recorded = match args.names == Naming::Torchvision && !args.dense {
        true => recorded,
        false => Recorded::default(),
    };
    weights::write_recording(&args.output, &tensors, &recorded)?;
    let mut report = format!(
        "{} ({}) -> {}: {} tensors\n",
        args.input.display(),
        format.describe(),
        args.output.display(),
        tensors.len()
    );
    let pth = vgg::io::extension(&args.output).is_some_and(|e| e == "pth" || e == "pt");
    let lost = match pth {
        true => recorded.beyond(&Shapes::of(&tensors)),
        false => Vec::new(),
    };
    if !lost.is_empty() {
        report += &format!(
            "note: a .pth holds tensors only; left out: {} (write .safetensors to keep them)\n",
            lost.join(", ")
        );
    }
    Ok(report)
}

/// The dense form's state_dict of the checkpoint's model (loaded strictly first).
fn dense_state_dict(path: &Path, state: StateDict) -> Result<Vec<(String, Tensor)>> {
    let config = detect_config_of(path, &state.shapes())?;
    let (model, _) = load(config, state, true, 0, &Device::Cpu)?;
    model.dense()?.state_dict()
}

/// The ONNX opset to write.
fn opset(args: &ConvertArgs) -> i64 {
    args.opset.unwrap_or(weights::onnx::DEFAULT_OPSET)
}

/// Refuses flags that do not fit the output's format, before any weights are read.
fn check_flags(args: &ConvertArgs, onnx: bool) -> Result<()> {
    if !onnx && (args.input_shape.is_some() || args.dynamic_batch || args.opset.is_some()) {
        return Err(Error::BadArgument(
            "--input-shape, --dynamic-batch and --opset describe an ONNX graph: give an .onnx \
             output"
                .into(),
        ));
    }
    if onnx && (args.dense || args.names != Naming::Torchvision) {
        let flag = if args.dense {
            "--dense"
        } else {
            "--names timm"
        };
        return Err(Error::BadArgument(format!(
            "{flag} writes a state_dict; an ONNX graph has the standard form"
        )));
    }
    if onnx {
        onnx::check_opset(opset(args))?;
    }
    Ok(())
}

/// The checkpoint as an ONNX graph at the requested input size, with the preprocessing and
/// class names the other commands would use for it.
fn export(args: &ConvertArgs, state: StateDict) -> Result<String> {
    let source = ModelSource::checkpoint(&args.input);
    let preprocess = (
        source.preprocess()?,
        source.recorded_preprocess()?.is_some(),
    );
    let config = detect_config_of(&args.input, &state.shapes())?;
    let (model, _) = load(config, state, true, 0, &Device::Cpu)?;
    let input = match args.input_shape.as_deref().map(parse_shape).transpose()? {
        None => None,
        Some(s) if s.len() == 3 => Some([1, s[0], s[1], s[2]]),
        Some(s) => Some([s[0], s[1], s[2], s[3]]),
    };
    let classes = source.class_names(model.config().num_classes())?;
    let options = onnx::ExportOptions {
        dynamic_batch: args.dynamic_batch,
        opset: opset(args),
        ..onnx::ExportOptions::for_model(&model, preprocess, classes, input)
    };
    onnx::write(&args.output, &model, &options)?;
    let [n, c, h, w] = options.input;
    let batch = if args.dynamic_batch {
        "N".to_string()
    } else {
        n.to_string()
    };
    Ok(format!(
        "{} -> {}: {} as ONNX (opset {}), input {batch}×{c}×{h}×{w}\n",
        args.input.display(),
        args.output.display(),
        model.config().name(),
        opset(args)
    ))
}
