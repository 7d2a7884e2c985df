//! `vgg evaluate`: top-1 / top-5 accuracy on an ImageFolder dataset.

use std::io::Write;
use std::path::PathBuf;
use std::time::Instant;

use clap::Args;

use crate::cli::images::ClassifierArgs;
use crate::cli::model::ModelSource;
use crate::cli::progress::progress_bar;
use vgg::data::imagefolder::{ImageFolder, read_class_map};
use vgg::data::loader::batches;
use vgg::error::{Error, Result};
use vgg::infer::top_k;

#[derive(Debug, Args)]
pub struct EvaluateArgs {
    #[command(flatten)]
    pub source: ModelSource,
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

/// Counts per class.
#[derive(Debug, Default, Clone, serde::Serialize)]
struct ClassScore {
    name: String,
    images: usize,
    top1: usize,
}

pub fn run(args: &EvaluateArgs, out: &mut dyn Write) -> Result<bool> {
    let class_map = args.class_map.as_deref().map(read_class_map).transpose()?;
    let mut folder = ImageFolder::open(&args.data, class_map.as_ref())?;
    folder.samples.truncate(args.limit.unwrap_or(usize::MAX));
    let (mut classifier, preprocess) = args
        .classifier
        .build(&args.source, args.batch_size.max(1))?;
    let num_classes = classifier.backend.config().num_classes;
    if folder.classes.len() > num_classes {
        return Err(Error::BadArgument(format!(
            "the dataset has {} classes but the model only {num_classes}",
            folder.classes.len()
        )));
    }
    let labels: std::collections::HashMap<PathBuf, usize> =
        folder.samples.iter().cloned().collect();
    let mut scores: Vec<ClassScore> = folder
        .classes
        .iter()
        .map(|n| ClassScore {
            name: n.clone(),
            ..Default::default()
        })
        .collect();
    let (mut top1, mut top5, mut failed) = (0usize, 0usize, Vec::new());
    let paths: Vec<PathBuf> = folder.samples.iter().map(|(p, _)| p.clone()).collect();
    let bar = progress_bar(paths.len(), "images");
    let started = Instant::now();
    let size = preprocess.crop;
    for batch in batches(paths, preprocess, args.batch_size.max(1)) {
        let good: Vec<(&PathBuf, &[f32])> = batch
            .iter()
            .filter_map(|(p, r)| r.as_deref().ok().map(|t| (p, t)))
            .collect();
        failed.extend(
            batch
                .iter()
                .filter_map(|(p, r)| r.as_ref().err().map(|e| (p.clone(), e.to_string()))),
        );
        let images: Vec<&[f32]> = good.iter().map(|(_, t)| *t).collect();
        let probs = if images.is_empty() {
            Vec::new()
        } else {
            classifier.probabilities(&images, size, size)?
        };
        for ((path, _), p) in good.iter().zip(&probs) {
            let truth = labels[*path];
            let best = top_k(p, 5);
            let hit1 = best[0].index == truth;
            top1 += usize::from(hit1);
            top5 += usize::from(best.iter().any(|b| b.index == truth));
            scores[truth].images += 1;
            scores[truth].top1 += usize::from(hit1);
        }
        bar.inc(batch.len() as u64);
    }
    bar.finish_and_clear();
    let seconds = started.elapsed().as_secs_f64();
    let evaluated = scores.iter().map(|s| s.images).sum::<usize>();
    let report = Report {
        evaluated,
        top1,
        top5,
        seconds,
        failed,
        scores,
    };
    let text = if args.json {
        report.json()
    } else {
        report.table()
    };
    out.write_all(text.as_bytes())
        .map_err(|e| Error::io(&args.data, "cannot print report for", e))?;
    Ok(report.failed.is_empty())
}

struct Report {
    evaluated: usize,
    top1: usize,
    top5: usize,
    seconds: f64,
    failed: Vec<(PathBuf, String)>,
    scores: Vec<ClassScore>,
}

impl Report {
    fn percent(hits: usize, total: usize) -> f64 {
        if total == 0 {
            0.0
        } else {
            100.0 * hits as f64 / total as f64
        }
    }

    fn json(&self) -> String {
        let classes: Vec<serde_json::Value> = self
            .scores
            .iter()
            .enumerate()
            .filter(|(_, s)| s.images > 0)
            .map(|(i, s)| serde_json::json!({"index": i, "name": s.name, "images": s.images, "top1": Self::percent(s.top1, s.images)}))
            .collect();
        let failed: Vec<serde_json::Value> = self
            .failed
            .iter()
            .map(|(p, e)| serde_json::json!({"path": p.display().to_string(), "error": e}))
            .collect();
        serde_json::json!({
            "images": self.evaluated,
            "top1": Self::percent(self.top1, self.evaluated),
            "top5": Self::percent(self.top5, self.evaluated),
            "images_per_s": self.evaluated as f64 / self.seconds.max(1e-9),
            "seconds": self.seconds,
            "per_class": classes,
            "failed": failed,
        })
        .to_string()
            + "\n"
    }

    fn table(&self) -> String {
        let mut text = format!(
            "images: {}  top-1: {:.2}%  top-5: {:.2}%  ({:.1} images/s)\n",
            self.evaluated,
            Self::percent(self.top1, self.evaluated),
            Self::percent(self.top5, self.evaluated),
            self.evaluated as f64 / self.seconds.max(1e-9)
        );
        text += "per class (top-1):\n";
        for s in self.scores.iter().filter(|s| s.images > 0) {
            text += &format!(
                "  {:>7.2}%  {:>5}  {}\n",
                Self::percent(s.top1, s.images),
                s.images,
                s.name
            );
        }
        for (path, error) in &self.failed {
            text += &format!("skipped {}: {error}\n", path.display());
        }
        text
    }
}
