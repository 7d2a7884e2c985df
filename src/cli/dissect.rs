//! `vgg dissect`: an HTML report of what the network does with one image — the input it
//! sees, each conv block's feature maps, the first layer's filters, the top-5 classes, a
//! Grad-CAM heatmap and the model summary.

use std::path::PathBuf;

use candle_core::Device;
use clap::Args;

use crate::cli::images::PreprocessArgs;
use crate::cli::model::ModelFlags;
use vgg::error::Result;
use vgg::viz::dissect::dissect;
use vgg::viz::report;

#[derive(Debug, Args)]
pub struct DissectArgs {
    #[command(flatten)]
    pub source: ModelFlags,
    /// The image to look at
    pub image: PathBuf,
    /// Folder for index.html and the PNGs (created if missing)
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,
    /// Replace the report's files (index.html and its PNGs) when --out already holds some
    #[arg(long)]
    pub force: bool,
    #[command(flatten)]
    pub preprocess: PreprocessArgs,
}

pub fn run(args: &DissectArgs) -> Result<String> {
    let mut inputs = vec![args.image.as_path()];
    inputs.extend(args.source.weights.as_deref());
    report::check_out(&args.out, args.force, &inputs)?;
    let source = args.source.source()?;
    let preprocess = args.preprocess.preprocess_for(&source)?;
    let image = preprocess.apply(&preprocess.load(&args.image)?)?;
    let (model, _) = source.open(&Device::Cpu)?;
    let labels = source.class_names(model.config().num_classes())?;
    let dissection = dissect(&model, &image, &preprocess, &labels)?;
    let name = args.image.file_name().unwrap_or(args.image.as_os_str());
    let title = name.to_string_lossy();
    report::write(&args.out, &dissection, (&title, &inputs), args.force)?;
    let (class, prob) = &dissection.top[0];
    Ok(format!(
        "top class: {class} ({:.2}%); wrote {} and {} PNGs\n",
        prob * 100.0,
        args.out.join("index.html").display(),
        dissection.figures().count()
    ))
}
