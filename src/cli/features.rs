//! `vgg features`: any layer's activations for each image (transfer learning, perceptual
//! losses), stacked into one `.npy` or keyed by file name in a `.safetensors`.

use std::path::PathBuf;

use candle_core::{Device, Tensor};
use clap::Args;

use crate::cli::images::PreprocessArgs;
use crate::cli::model::ModelSource;
use vgg::data::loader::{batches, collect_images};
use vgg::error::{Error, Result};
use vgg::infer::stack;
use vgg::io::write_atomically;
use vgg::model::Mode;
use vgg::weights;

#[derive(Debug, Args)]
pub struct FeaturesArgs {
    #[command(flatten)]
    pub source: ModelSource,
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
    let extension = args
        .output
        .extension()
        .and_then(|e| e.to_str())
        .unwrap_or_default();
    if !matches!(extension, "npy" | "safetensors") {
        return Err(Error::BadArgument(format!(
            "--output {}: expected a .npy or .safetensors file",
            args.output.display()
        )));
    }
    let preprocess = args.preprocess.preprocess()?;
    let paths = collect_images(&args.paths)?;
    let (model, _) = args.source.build(&Device::Cpu)?;
    model.layer_index(&args.layer)?;
    let size = preprocess.crop;
    let mut rows: Vec<(String, Tensor)> = Vec::new();
    for batch in batches(paths, preprocess, args.batch_size.max(1)) {
        let mut images = Vec::new();
        for (path, result) in &batch {
            let image = result
                .as_deref()
                .map_err(|e| Error::BadArgument(e.to_string()))?;
            images.push((path.display().to_string(), image));
        }
        let slices: Vec<&[f32]> = images.iter().map(|(_, i)| *i).collect();
        let x = stack(&slices, size, size, false, &Device::Cpu)?;
        let activations = model.forward_to(&x, Mode::Eval, Some(&args.layer))?;
        for (i, (name, _)) in images.into_iter().enumerate() {
            rows.push((name, activations.get(i)?));
        }
    }
    let shape = rows
        .first()
        .map(|(_, t)| t.dims().to_vec())
        .unwrap_or_default();
    if extension == "npy" {
        let stacked = Tensor::stack(&rows.iter().map(|(_, t)| t).collect::<Vec<_>>(), 0)?;
        write_atomically(&args.output, |tmp| Ok(stacked.write_npy(tmp)?))?;
    } else {
        weights::write(&args.output, &rows)?;
    }
    Ok(format!(
        "{} images, {} activations of shape {shape:?} written to {}\n",
        rows.len(),
        args.layer,
        args.output.display()
    ))
}
