//! `vgg summary`: torchsummary / torchinfo / JSON tables of a model.

use std::path::PathBuf;

use clap::{Args, ValueEnum};

use crate::cli::args::{ModelArgs, Part, parse_shape};
use vgg::ModelSource;
use vgg::error::{Error, Result};
use vgg::model::VggConfig;
use vgg::model::layers::{Container, Form};
use vgg::summary::{Channels, Style, Summary, render};
use vgg::weights;

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    /// torchsummary 1.5.1's table
    Torchsummary,
    /// torchinfo 1.8.0's table
    Torchinfo,
    /// rows and totals as JSON
    Json,
}

#[derive(Debug, Args)]
pub struct SummaryArgs {
    /// vgg11, vgg11_bn, vgg13, vgg13_bn, vgg16, vgg16_bn, vgg19, vgg19_bn, custom, or auto
    /// (the layout of --weights)
    pub arch: String,
    #[command(flatten)]
    pub model: ModelArgs,
    /// With arch `auto`: summarise the network this checkpoint holds (any format we read,
    /// a `vgg train` checkpoint included)
    #[arg(long, value_name = "FILE")]
    pub weights: Option<PathBuf>,
    /// Input shape CxHxW (or NxCxHxW); with an arch name, C other than 3 changes the first
    /// convolution [default: 3x224x224; with --weights, the checkpoint's channels at the crop
    /// it was trained on, else 224]
    #[arg(long, allow_hyphen_values = true)]
    pub input: Option<String>,
    /// Batch size: -1 (torchsummary's default, printed as such; torchinfo's is 1) or at least 1
    #[arg(long, value_name = "N", allow_negative_numbers = true, value_parser = batch_size)]
    pub batch_size: Option<BatchSize>,
    #[arg(long, value_enum, default_value_t = Format::Torchsummary)]
    pub format: Format,
    /// torchinfo columns, in order: input_size,output_size,num_params,params_percent,
    /// kernel_size,mult_adds,trainable [default: output_size,num_params]
    #[arg(long, value_name = "LIST")]
    pub columns: Option<String>,
    /// torchinfo: deepest level of modules shown (0 = the model only) [default: 3]
    #[arg(long)]
    pub depth: Option<usize>,
    /// Mark these parameters frozen (non-trainable); repeatable
    #[arg(long, value_enum)]
    pub freeze: Vec<Part>,
    /// Summarise the dense (fully convolutional) form of the paper's §3.2: fc6 as a
    /// pool×pool convolution, fc7 and fc8 as 1×1 ones; the input must be at least the
    /// native size (224 for torchvision's VGGs)
    #[arg(long)]
    pub dense: bool,
}

/// `--batch-size`: torchsummary's -1 ("any"), or a number of images.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BatchSize {
    Unspecified,
    Images(usize),
}

fn batch_size(text: &str) -> std::result::Result<BatchSize, String> {
    match text.trim() {
        "-1" => Ok(BatchSize::Unspecified),
        n => match n.parse::<usize>() {
            Ok(n) if n >= 1 => Ok(BatchSize::Images(n)),
            _ => Err(format!(
                "expected -1 or a whole number of at least 1, got `{n}`"
            )),
        },
    }
}

pub fn run(args: &SummaryArgs) -> Result<String> {
    let (config, channels) = config(args)?;
    let shape = match (&args.input, &args.weights) {
        (Some(text), _) => parse_shape(text)?,
        (None, Some(path)) => {
            let crop = ModelSource::checkpoint(path).preprocess()?.crop;
            vec![config.in_channels(), crop, crop]
        }
        (None, None) => vec![3, 224, 224],
    };
    let given = match args.batch_size {
        Some(BatchSize::Unspecified) | None => None,
        Some(BatchSize::Images(n)) => Some(n),
    };
    let (batch, chw) = match (shape.as_slice(), given) {
        (&[c, h, w], batch) => (batch, [c, h, w]),
        (&[n, c, h, w], None) => (Some(n), [c, h, w]),
        (&[n, ..], Some(b)) if n != b => {
            return Err(Error::BadArgument(format!(
                "--input gives batch {n} but --batch-size says {b}; give one of them"
            )));
        }
        (&[n, c, h, w], Some(_)) => (Some(n), [c, h, w]),
        _ => unreachable!("parse_shape returns 3 or 4 sizes"),
    };
    if batch == Some(0) {
        return Err(Error::BadArgument("--batch-size must be at least 1".into()));
    }
    let columns: Option<Vec<String>> =
        (args.columns.as_deref()).map(|list| list.split(',').map(String::from).collect());
    let format = match args.format {
        Format::Torchsummary => "torchsummary",
        Format::Torchinfo => "torchinfo",
        Format::Json => "json",
    };
    let batch_label = batch.map_or(-1, |b| b as i64);
    if args.depth.is_some() && args.format != Format::Torchinfo {
        return Err(Error::BadArgument(
            "--depth applies to the torchinfo format (--format torchinfo)".into(),
        ));
    }
    let depth = args.depth.unwrap_or(vgg::summary::torchinfo::DEFAULT_DEPTH);
    let style = Style::parse(format, batch_label, columns.as_deref(), depth)?;
    let frozen: Vec<Container> = args.freeze.iter().map(|&p| p.into()).collect();
    let form = if args.dense {
        Form::Dense
    } else {
        Form::Standard
    };
    let summary = Summary::of_input(&config, channels, form, batch.unwrap_or(1), chw, &frozen)?;
    Ok(render(&summary, &style))
}

/// The named config, or the one a checkpoint holds (`auto --weights FILE`), with where
/// its input channels come from.
fn config(args: &SummaryArgs) -> Result<(VggConfig, Channels)> {
    match (args.arch.as_str(), &args.weights) {
        ("auto", Some(path)) => {
            let source = args.model.source("auto", Some(path.clone()))?;
            let shapes = weights::read(path)?.shapes();
            Ok((source.config(Some(&shapes))?, Channels::Own))
        }
        ("auto", None) => Err(Error::BadArgument(
            "arch `auto` summarises a checkpoint: give --weights FILE".into(),
        )),
        (arch, Some(_)) => Err(Error::BadArgument(format!(
            "--weights goes with arch `auto` (the layout comes from the file), not `{arch}`"
        ))),
        (arch, None) => Ok((args.model.config(arch)?, Channels::FromInput)),
    }
}
