//! `evaluate`: top-1 / top-5 accuracy of a classifier on an ImageFolder, overall and per
//! class, with throughput and the images that could not be read.

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::Instant;

use crate::data::imagefolder::ImageFolder;
use crate::data::loader::batches_with;
use crate::data::preprocess::Preprocess;
use crate::error::{Error, Result, about, one_line};
use crate::infer::protocol::Protocol;
use crate::infer::{Classifier, Engine, Prepared, top_k};
use crate::progress::Progress;

/// One class's count of images and top-1 hits.
#[derive(Debug, Default, Clone, serde::Serialize)]
pub struct ClassScore {
    pub name: String,
    pub images: usize,
    pub top1: usize,
}

/// What an evaluation found.
#[derive(Debug, Clone)]
pub struct Evaluation {
    /// Images classified (not counting `failed`).
    pub images: usize,
    pub top1: usize,
    pub top5: usize,
    pub seconds: f64,
    /// Images that could not be read, and why.
    pub failed: Vec<(PathBuf, String)>,
    /// Indexed by class.
    pub per_class: Vec<ClassScore>,
    /// Which engine (and precision) classified the images.
    pub engine: Engine,
    /// How each image was evaluated, and at which test scales (none for `center`).
    pub protocol: Protocol,
    pub scales: Vec<usize>,
}

/// `hits` out of `total` in percent (0 for no images).
pub fn percent(hits: usize, total: usize) -> f64 {
    if total == 0 {
        0.0
    } else {
        100.0 * hits as f64 / total as f64
    }
}

impl Evaluation {
    pub fn top1_percent(&self) -> f64 {
        percent(self.top1, self.images)
    }

    pub fn top5_percent(&self) -> f64 {
        percent(self.top5, self.images)
    }

    /// Top-1 error in percent, as the paper reports it.
    pub fn top1_error(&self) -> f64 {
        100.0 - self.top1_percent()
    }

    pub fn top5_error(&self) -> f64 {
        100.0 - self.top5_percent()
    }

    /// The protocol and its scales, e.g. `dense at 256,384,512`.
    pub fn protocol_label(&self) -> String {
        if self.scales.is_empty() {
            return self.protocol.name().to_string();
        }
        let scales: Vec<String> = self.scales.iter().map(usize::to_string).collect();
        format!("{} at {}", self.protocol.name(), scales.join(","))
    }

    pub fn images_per_s(&self) -> f64 {
        self.images as f64 / self.seconds.max(1e-9)
    }

    /// The report as a JSON object: totals, per-class top-1 and the failures.
    pub fn json(&self) -> serde_json::Value {
        let classes: Vec<serde_json::Value> = self
            .per_class
            .iter()
            .enumerate()
            .filter(|(_, s)| s.images > 0)
            .map(|(i, s)| serde_json::json!({"index": i, "name": s.name, "images": s.images, "top1": percent(s.top1, s.images)}))
            .collect();
        let failed: Vec<serde_json::Value> = self
            .failed
            .iter()
            .map(|(p, e)| serde_json::json!({"path": p.display().to_string(), "error": e}))
            .collect();
        serde_json::json!({
            "images": self.images,
            "top1": self.top1_percent(),
            "top5": self.top5_percent(),
            "top1_error": self.top1_error(),
            "top5_error": self.top5_error(),
            "engine": self.engine.name(),
            "protocol": self.protocol,
            "scales": self.scales,
            "images_per_s": self.images_per_s(),
            "seconds": self.seconds,
            "per_class": classes,
            "failed": failed,
        })
    }

    /// The report as text: totals, then top-1 per class, then the skipped images.
    pub fn table(&self) -> String {
        let mut text = format!(
            "images: {}  top-1: {:.2}%  top-5: {:.2}%  ({:.1} images/s, {}, {} engine)\n\
             top-1 error: {:.2}%  top-5 error: {:.2}%\n",
            self.images,
            self.top1_percent(),
            self.top5_percent(),
            self.images_per_s(),
            self.protocol_label(),
            self.engine.name(),
            self.top1_error(),
            self.top5_error(),
        );
        text += "per class (top-1):\n";
        for s in self.per_class.iter().filter(|s| s.images > 0) {
            text += &format!(
                "  {:>7.2}%  {:>5}  {}\n",
                percent(s.top1, s.images),
                s.images,
                s.name
            );
        }
        for (path, error) in &self.failed {
            text += &format!("skipped {}\n", about(&path.display().to_string(), error));
        }
        text
    }
}

/// Classifies every sample of `folder` and counts the hits against its labels.
pub fn evaluate(
    classifier: &mut Classifier,
    folder: &ImageFolder,
    preprocess: Preprocess,
    batch_size: usize,
    progress: &dyn Progress,
) -> Result<Evaluation> {
    if folder.samples.is_empty() {
        return Err(Error::BadArgument(
            "no images to evaluate: the image list is empty".into(),
        ));
    }
    let num_classes = classifier.backend.config().num_classes();
    if folder.classes.len() > num_classes {
        return Err(Error::BadArgument(format!(
            "the dataset has {} classes but the model only {num_classes}",
            folder.classes.len()
        )));
    }
    let labels: HashMap<&PathBuf, usize> = folder.samples.iter().map(|(p, l)| (p, *l)).collect();
    let mut evaluation = Evaluation {
        images: 0,
        top1: 0,
        top5: 0,
        seconds: 0.0,
        failed: Vec::new(),
        per_class: (folder.classes.iter())
            .map(|name| ClassScore {
                name: name.clone(),
                ..ClassScore::default()
            })
            .collect(),
        engine: classifier.engine(),
        protocol: classifier.protocol(),
        scales: (classifier.scales.as_ref()).map_or_else(Vec::new, |s| s.scales.clone()),
    };
    let paths: Vec<PathBuf> = folder.samples.iter().map(|(p, _)| p.clone()).collect();
    progress.begin(paths.len(), "images");
    let started = Instant::now();
    let crop = preprocess.crop;
    let preparation = classifier.preparation(&preprocess);
    let loaded = batches_with(paths, batch_size.max(1), move |path| {
        preparation.prepare(&preparation.preprocess.load(path)?)
    });
    for batch in loaded {
        let mut good = Vec::new();
        for (path, prepared) in &batch {
            match prepared {
                Ok(image) => good.push((path, image)),
                Err(e) => (evaluation.failed).push((path.clone(), one_line(&e.to_string()))),
            }
        }
        let images: Vec<&Prepared> = good.iter().map(|(_, t)| *t).collect();
        let probs = classifier.posteriors(&images, crop)?;
        for ((path, _), p) in good.iter().zip(&probs) {
            evaluation.count(labels[path], &top_k(p, 5));
        }
        progress.advance(batch.len(), "");
    }
    progress.end();
    if let (0, Some((path, error))) = (evaluation.images, evaluation.failed.first()) {
        return Err(Error::BadArgument(format!(
            "none of the {} images could be evaluated (no accuracy to report); the first: {}",
            evaluation.failed.len(),
            about(&path.display().to_string(), error)
        )));
    }
    evaluation.seconds = started.elapsed().as_secs_f64();
    Ok(evaluation)
}

impl Evaluation {
    fn count(&mut self, truth: usize, best: &[crate::infer::Prediction]) {
        let hit1 = best.first().is_some_and(|b| b.index == truth);
        self.images += 1;
        self.top1 += usize::from(hit1);
        self.top5 += usize::from(best.iter().any(|b| b.index == truth));
        self.per_class[truth].images += 1;
        self.per_class[truth].top1 += usize::from(hit1);
    }
}
