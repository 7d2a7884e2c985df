//! `vgg classify`: top-k classes for images, as a table or JSON lines.

use std::io::Write;
use std::path::{Path, PathBuf};

use clap::Args;

use crate::cli::images::ClassifierArgs;
use crate::cli::model::ModelFlags;
use crate::cli::progress::Bar;
use vgg::data::loader::collect_images;
use vgg::error::{Error, Result};
use vgg::infer::Prediction;
use vgg::infer::classify::{Classified, classify};

#[derive(Debug, Args)]
pub struct ClassifyArgs {
    #[command(flatten)]
    pub source: ModelFlags,
    /// Image files and folders (searched recursively)
    #[arg(required = true)]
    pub paths: Vec<PathBuf>,
    /// How many classes to show per image
    #[arg(long, default_value_t = 5)]
    pub top: usize,
    /// Images per forward pass (the fast engine compiles for this batch)
    #[arg(long, default_value_t = 8)]
    pub batch_size: usize,
    /// One JSON object per line per image
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub classifier: ClassifierArgs,
}

/// Returns whether every image was classified.
pub fn run(args: &ClassifyArgs, out: &mut dyn Write) -> Result<bool> {
    if args.batch_size == 0 || args.top == 0 {
        return Err(Error::BadArgument(
            "--batch-size and --top must be at least 1".into(),
        ));
    }
    args.classifier.engine()?;
    let paths = collect_images(&args.paths)?;
    let batch_size = vgg::infer::batch_for(args.batch_size, paths.len())?;
    let (mut classifier, preprocess) = args.classifier.build(&args.source, batch_size)?;
    let labels = (args.source.source()?).class_names(classifier.backend.config().num_classes())?;
    let bar = Bar::default();
    classify(
        &mut classifier,
        paths,
        preprocess,
        batch_size,
        args.top,
        &bar,
        |Classified { path, result }| {
            let line = match &result {
                Ok(top) => render(&path, top, &labels, args.json),
                Err(e) => render_error(&path, e, args.json),
            };
            bar.suspend(|| writeln!(out, "{line}"))
                .map_err(|e| Error::io(&path, "cannot print result for", e))
        },
    )
}

fn render(path: &Path, top: &[Prediction], labels: &[String], json: bool) -> String {
    if json {
        let top: Vec<serde_json::Value> = top
            .iter()
            .map(
                |p| serde_json::json!({"index": p.index, "label": labels[p.index], "prob": p.prob}),
            )
            .collect();
        return serde_json::json!({"path": path.display().to_string(), "top": top}).to_string();
    }
    let mut text = format!("{}", path.display());
    for p in top {
        text += &format!(
            "\n  {:>6.2}%  {:>4}  {}",
            p.prob * 100.0,
            p.index,
            labels[p.index]
        );
    }
    text
}

fn render_error(path: &Path, error: &Error, json: bool) -> String {
    let error = vgg::error::one_line(&match error {
        Error::BadImage { why, .. } => why.clone(),
        other => other.to_string(),
    });
    if json {
        serde_json::json!({"path": path.display().to_string(), "error": error.to_string()})
            .to_string()
    } else {
        format!("{}\n  error: {error}", path.display())
    }
}
