//! `vgg evaluate`: top-1 / top-5 accuracy on an ImageFolder dataset.

use std::io::Write;
use std::path::PathBuf;

use clap::Args;

use crate::cli::images::ClassifierArgs;
use crate::cli::model::ModelFlags;
use crate::cli::progress::Bar;
use vgg::data::imagefolder::{ImageFolder, read_class_map};
use vgg::error::{Error, Result};
use vgg::infer::evaluate::evaluate;

#[derive(Debug, Args)]
pub struct EvaluateArgs {
    #[command(flatten)]
    pub source: ModelFlags,
    /// ImageFolder root: one sub-folder of images per class
    #[arg(long, value_name = "DIR")]
    pub data: PathBuf,
    /// Map folder names to class indices (`NAME` per line = its line number, or `NAME INDEX`)
    #[arg(long, value_name = "FILE")]
    pub class_map: Option<PathBuf>,
    /// Evaluate only the first N images (in folder order)
    #[arg(long, value_name = "N")]
    pub limit: Option<usize>,
    #[arg(long, default_value_t = 16)]
    pub batch_size: usize,
    /// Print the report as JSON
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub classifier: ClassifierArgs,
}

/// Returns whether every image was evaluated.
pub fn run(args: &EvaluateArgs, out: &mut dyn Write) -> Result<bool> {
    args.classifier.engine()?;
    if args.limit == Some(0) {
        return Err(Error::BadArgument(
            "--limit 0 leaves no images to evaluate: give at least 1".into(),
        ));
    }
    let class_map = args.class_map.as_deref().map(read_class_map).transpose()?;
    let mut folder = ImageFolder::open(&args.data, class_map.as_ref())?;
    folder.samples.truncate(args.limit.unwrap_or(usize::MAX));
    let batch_size = vgg::infer::batch_for(args.batch_size, folder.samples.len())?;
    let (mut classifier, preprocess) = args.classifier.build(&args.source, batch_size)?;
    let report = evaluate(
        &mut classifier,
        &folder,
        preprocess,
        batch_size,
        &Bar::default(),
    )?;
    let text = if args.json {
        report.json().to_string() + "\n"
    } else {
        report.table()
    };
    out.write_all(text.as_bytes())
        .map_err(|e| Error::io(&args.data, "cannot print report for", e))?;
    Ok(report.failed.is_empty())
}
