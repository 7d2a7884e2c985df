//! `vgg features`: any layer's activations for each image (transfer learning, perceptual
//! losses), stacked into one `.npy` or keyed by file name in a `.safetensors`.

use std::path::PathBuf;

use candle_core::Device;
use clap::Args;

use crate::cli::images::PreprocessArgs;
use crate::cli::model::ModelFlags;
use vgg::data::loader::collect_images;
use vgg::error::Result;
use vgg::infer::features::{FeatureFile, extract_features, write_features};

#[derive(Debug, Args)]
pub struct FeaturesArgs {
    #[command(flatten)]
    pub source: ModelFlags,
    /// Module whose output to keep: features.29, avgpool, classifier.4…
    #[arg(long, value_name = "NAME")]
    pub layer: String,
    /// Image files and folders (searched recursively)
    #[arg(required = true)]
    pub paths: Vec<PathBuf>,
    /// .npy (stacked in order) or .safetensors (keyed by file path)
    #[arg(long, value_name = "FILE")]
    pub output: PathBuf,
    #[arg(long, default_value_t = 8)]
    pub batch_size: usize,
    #[command(flatten)]
    pub preprocess: PreprocessArgs,
}

pub fn run(args: &FeaturesArgs) -> Result<String> {
    let mut inputs: Vec<&std::path::Path> = args.paths.iter().map(|p| p.as_path()).collect();
    inputs.extend(args.source.weights.as_deref());
    vgg::io::check_output(&args.output, &inputs)?;
    FeatureFile::for_path(&args.output)?;
    let source = args.source.source()?;
    let preprocess = args.preprocess.preprocess_for(&source)?;
    let paths = collect_images(&args.paths)?;
    let batch_size = vgg::infer::batch_for(args.batch_size, paths.len())?;
    let (model, _) = source.open(&Device::Cpu)?;
    let rows = extract_features(&model, paths, preprocess, &args.layer, batch_size)?;
    write_features(&args.output, &rows)?;
    let shape = rows
        .first()
        .map(|(_, t)| t.dims().to_vec())
        .unwrap_or_default();
    Ok(format!(
        "{} images, {} activations of shape {shape:?} written to {}\n",
        rows.len(),
        args.layer,
        args.output.display()
    ))
}
