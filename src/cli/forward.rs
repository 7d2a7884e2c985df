//! `vgg forward`: run the network on an NCHW float32 `.npy` array and write the result.

use std::path::PathBuf;

use candle_core::Device;
use clap::Args;

use crate::cli::model::{self, EngineFlag, ModelFlags};
use vgg::engine::{PlanOptions, Precision};
use vgg::error::{Error, Result};
use vgg::infer::Engine;
use vgg::io::write_atomically;
use vgg::model::Mode;

#[derive(Debug, Args)]
pub struct ForwardArgs {
    #[command(flatten)]
    pub source: ModelFlags,
    /// Input array, NCHW float32 (.npy)
    #[arg(long, value_name = "FILE")]
    pub input: PathBuf,
    /// Where to write the output array (.npy)
    #[arg(long, value_name = "FILE")]
    pub output: PathBuf,
    /// Stop after this module (features.10, avgpool, classifier.3…) and write its activation
    #[arg(long, value_name = "NAME")]
    pub layer: Option<String>,
    /// Training mode: dropout on, batch norm with batch statistics
    #[arg(long)]
    pub train: bool,
    /// fast: the CPU engine (eval-mode logits); reference: the module-by-module model (our CPU ops on candle tensors, as training runs them)
    /// (always used for --layer and --train)
    #[arg(long, value_enum, default_value_t = EngineFlag::Fast)]
    pub engine: EngineFlag,
    /// Number format of the fast engine's products: f32; bf16 (bf16 operands, f32
    /// accumulation; AVX512_BF16 where the CPU has it, a slower exact emulation elsewhere);
    /// or int8 (weights `vgg quantize` calibrated). The fast engine computes the output
    /// only: bf16 and int8 do not go with --layer or --train
    #[arg(long, default_value = "f32", value_parser = model::parse_precision)]
    pub precision: Precision,
    /// Run the dense (fully convolutional) form, paper §3.2: the output is the class score
    /// map [N, classes, h, w] of an input at least the native size (224 for torchvision's)
    #[arg(long, conflicts_with_all = ["layer", "train"])]
    pub dense: bool,
}

pub fn run(args: &ForwardArgs) -> Result<String> {
    let device = Device::Cpu;
    let engine = model::engine(args.engine, args.precision)?;
    let fast = engine != Engine::Reference && !args.train && args.layer.is_none();
    if !fast && args.precision != Precision::F32 {
        return Err(Error::BadArgument(format!(
            "--precision {} runs the fast engine, which computes the network's output; \
             --layer and --train run the reference model in f32",
            args.precision
        )));
    }
    let mut inputs = vec![args.input.as_path()];
    inputs.extend(args.source.weights.as_deref());
    vgg::io::check_output(&args.output, &inputs)?;
    vgg::io::check_npy_output(&args.output, "the output array")?;
    let input = vgg::data::npy::read_f32(&args.input)?;
    let source = args.source.source()?;
    source.check_input(&input, || format!("--input {}: ", args.input.display()))?;
    let (name, output, report) = if fast {
        let [n, c, h, w]: [usize; 4] = input.dims().try_into().map_err(|_| {
            Error::BadArgument(format!(
                "expected an NCHW input, got shape {:?}",
                input.dims()
            ))
        })?;
        let options = PlanOptions {
            dense: args.dense,
            ..engine.plan_options()
        };
        let (mut model, report) = source.open_fast(n, [h, w], options)?;
        let expected = model.config().in_channels();
        if c != expected {
            return Err(Error::ChannelMismatch {
                model: model.config().name().to_string(),
                expected,
                got: c,
            });
        }
        (
            model.config().name().to_string(),
            model.forward(&input)?,
            report,
        )
    } else {
        let (model, report) = source.open(&device)?;
        let model = if args.dense { model.dense()? } else { model };
        let mode = if args.train { Mode::Train } else { Mode::Eval };
        let output = model.forward_to(&input, mode, args.layer.as_deref())?;
        // The fast engine refuses non-finite outputs itself.
        vgg::ops::with_f32_values(&output, vgg::model::check_network_outputs)??;
        (model.config().name().to_string(), output, report)
    };
    write_atomically(&args.output, |tmp| Ok(output.write_npy(tmp)?))?;
    let mut text = String::new();
    if let Some(report) = report.filter(|r| !r.is_exact()) {
        text += &format!("warning: {report}\n");
    }
    text += &format!(
        "{name} {:?} -> {:?} written to {}\n",
        input.dims(),
        output.dims(),
        args.output.display()
    );
    Ok(text)
}
