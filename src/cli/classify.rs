//! `vgg classify`: top-k classes for images, as a table or JSON lines.

use std::io::Write;
use std::path::PathBuf;

use clap::Args;

use crate::cli::images::ClassifierArgs;
use crate::cli::model::ModelSource;
use crate::cli::progress::progress_bar;
use vgg::data::labels::imagenet_classes;
use vgg::data::loader::{batches, collect_images};
use vgg::error::{Error, Result};
use vgg::infer::{Prediction, top_k};

#[derive(Debug, Args)]
pub struct ClassifyArgs {
    #[command(flatten)]
    pub source: ModelSource,
    /// Image files and folders (searched recursively)
    #[arg(required = true)]
    pub paths: Vec<PathBuf>,
    /// How many classes to show per image
    #[arg(long, default_value_t = 5)]
    pub top: usize,
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
    let paths = collect_images(&args.paths)?;
    let (mut classifier, preprocess) = args.classifier.build(&args.source, args.batch_size)?;
    let labels = class_names(
        classifier.backend.config().num_classes,
        args.source.weights.as_deref(),
    );
    let bar = progress_bar(paths.len(), "images");
    let size = preprocess.crop;
    let mut all_ok = true;
    for batch in batches(paths, preprocess, args.batch_size) {
        let good: Vec<&[f32]> = batch
            .iter()
            .filter_map(|(_, r)| r.as_deref().ok())
            .collect();
        let mut probs = if good.is_empty() {
            Vec::new()
        } else {
            classifier.probabilities(&good, size, size)?
        }
        .into_iter();
        for (path, result) in &batch {
            let line = match result {
                Ok(_) => {
                    let p = probs.next().expect("one row per good image");
                    render(path, &top_k(&p, args.top), &labels, args.json)
                }
                Err(e) => {
                    all_ok = false;
                    render_error(path, e, args.json)
                }
            };
            bar.suspend(|| writeln!(out, "{line}"))
                .map_err(|e| Error::io(path, "cannot print result for", e))?;
        }
        bar.inc(batch.len() as u64);
    }
    bar.finish_and_clear();
    Ok(all_ok)
}

/// The class names a `vgg train` checkpoint recorded, else ImageNet's names for 1000
/// classes, else class numbers.
pub fn class_names(num_classes: usize, weights: Option<&std::path::Path>) -> Vec<String> {
    let trained = weights.and_then(vgg::weights::safetensors::class_names);
    if let Some(names) = trained.filter(|names| names.len() == num_classes) {
        names
    } else if num_classes == 1000 {
        imagenet_classes().into_iter().map(String::from).collect()
    } else {
        (0..num_classes).map(|i| format!("class {i}")).collect()
    }
}

fn render(path: &std::path::Path, top: &[Prediction], labels: &[String], json: bool) -> String {
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

fn render_error(path: &std::path::Path, error: &Error, json: bool) -> String {
    let error = match error {
        Error::BadImage { why, .. } => why.clone(),
        other => other.to_string(),
    };
    if json {
        serde_json::json!({"path": path.display().to_string(), "error": error.to_string()})
            .to_string()
    } else {
        format!("{}\n  error: {error}", path.display())
    }
}
