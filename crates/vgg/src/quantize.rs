//! int8 calibration of a model (`vgg quantize`, `--calib`): run it in f32 on sample images,
//! record every layer's input range, measure each layer's own error in int8, keep in f32
//! the layers that lose too much, and check the whole int8 network against f32.

use std::path::PathBuf;

use candle_core::Device;

use crate::data::loader::{IMAGE_EXTENSIONS, batches, collect_images};
use crate::data::preprocess::Preprocess;
use crate::engine::quant::{Calibrator, LayerReport};
use crate::engine::{PlanOptions, Precision};
use crate::error::{Error, Result};
use crate::fast::{FastOptions, FastVgg, layer_paths, model_spec, with_layer_path};
use crate::model::Vgg;
use crate::model::footprint::{self, Work};
use crate::open::ModelSource;
use crate::progress::Progress;
use crate::weights::recorded::{CalibratedLayer, Int8Calibration};

/// How to calibrate.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CalibrationOptions {
    /// Images per engine run.
    pub batch: usize,
    /// The largest relative RMS error (‖int8 − f32‖ / ‖f32‖ of its outputs) a layer may have
    /// in int8; a layer above it is kept in f32.
    pub max_error: f64,
}

impl Default for CalibrationOptions {
    fn default() -> Self {
        CalibrationOptions {
            batch: 8,
            max_error: 0.05,
        }
    }
}

impl CalibrationOptions {
    /// Refuses a batch of 0 and an error bound that is not a positive number.
    pub fn validate(&self) -> Result<()> {
        if self.batch == 0 {
            return Err(Error::BadArgument("--batch-size must be at least 1".into()));
        }
        if self.max_error.is_nan() || self.max_error <= 0.0 {
            return Err(Error::BadArgument(format!(
                "--max-error {}: expected a positive number, e.g. 0.05 for 5%",
                self.max_error
            )));
        }
        Ok(())
    }
}

/// Calibrates `model` on `inputs` (CHW, `size` = height, width, the model's channels),
/// reporting its two passes over them to `progress`.
pub fn calibrate(
    model: &Vgg,
    inputs: &[Vec<f32>],
    size: [usize; 2],
    options: CalibrationOptions,
    progress: &dyn Progress,
) -> Result<Int8Calibration> {
    options.validate()?;
    let groups = Groups::new(model, inputs, size, options.batch)?;
    // The network's own words for an input it does not take (too small for its pools), and
    // the budget's for one too large, before the engine's.
    let [h, w] = size;
    footprint::check(model.config(), groups.shape, Work::Inference, || {
        format!("calibration images at {h}x{w}: ")
    })?;
    let spec = model_spec(model)?;
    let [n, c, h, w] = groups.shape;
    let mut calibrator = Calibrator::new(spec, n, c, h, w)?;
    let named = |e| with_layer_path(model.config(), e);
    groups.each(progress, "input ranges", |batch| {
        calibrator.observe(batch).map_err(named)
    })?;
    groups.each(progress, "int8 errors", |batch| {
        calibrator.measure(batch).map_err(named)
    })?;
    let (convs, linears) = layer_paths(model.config());
    let paths = convs.iter().chain(&linears);
    let layers = (calibrator.report().iter().zip(paths))
        .map(|(report, path)| decide(report, path, options.max_error))
        .collect();
    Ok(Int8Calibration {
        images: inputs.len(),
        size,
        layers,
    })
}

/// Whether one layer computes in int8, and why not.
fn decide(report: &LayerReport, path: &str, max_error: f64) -> CalibratedLayer {
    let error = report.error;
    let kept_because = match (report.ineligible, error) {
        (Some(why), _) => Some(why.to_string()),
        (None, Some(e)) if e.relative_rms > max_error => Some(format!(
            "error {:.2}% > {:.2}%",
            100.0 * e.relative_rms,
            100.0 * max_error
        )),
        (None, Some(_)) => None,
        (None, None) => Some("not measured".to_string()),
    };
    CalibratedLayer {
        path: path.to_string(),
        input_min: report.input_min,
        input_max: report.input_max,
        relative_rms: error.map(|e| e.relative_rms),
        max_over_range: error.map(|e| e.max_over_range),
        int8: kept_because.is_none(),
        kept_because,
    }
}

/// Loads up to `limit` images from `paths` as `preprocess` makes them (any image that cannot
/// be read is an error naming it).
pub fn load_images(
    paths: Vec<PathBuf>,
    preprocess: &Preprocess,
    limit: usize,
) -> Result<Vec<Vec<f32>>> {
    let paths: Vec<PathBuf> = paths.into_iter().take(limit).collect();
    if paths.is_empty() {
        return Err(Error::BadArgument(
            "calibration needs at least one image, and the image limit is 0".into(),
        ));
    }
    preprocess.reserve_batch(paths.len())?;
    let mut images = Vec::with_capacity(paths.len());
    for batch in batches(paths, preprocess.clone(), 16) {
        for (path, image) in batch {
            images.push(image.map_err(|e| match e {
                Error::BadArgument(why) => {
                    Error::BadArgument(format!("calibration image {}: {why}", path.display()))
                }
                other => other,
            })?);
        }
    }
    Ok(images)
}

/// How int8 outputs compare with f32 on the same inputs.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Agreement {
    pub images: usize,
    /// Images whose top-1 class is the same in both.
    pub same_top1: usize,
    /// Per image, max |int8 − f32| over its logits / max |f32 logit|: the largest, and the median.
    pub max_relative_error: f64,
    pub median_relative_error: f64,
}

/// Runs `model` in f32 and in int8 (with `calibration`) on `inputs` and compares them.
pub fn agreement(
    model: &Vgg,
    calibration: &Int8Calibration,
    inputs: &[Vec<f32>],
    size: [usize; 2],
    batch: usize,
    progress: &dyn Progress,
) -> Result<Agreement> {
    let groups = Groups::new(model, inputs, size, batch)?;
    let int8 = FastOptions {
        plan: PlanOptions {
            precision: Precision::Int8,
            ..PlanOptions::default()
        },
        int8: Some(calibration.clone()),
    };
    let mut reference = FastVgg::from_model(model, groups.shape, PlanOptions::default())?;
    let mut quantized = FastVgg::from_model(model, groups.shape, int8)?;
    let (mut same_top1, mut errors) = (0, Vec::new());
    groups.each(progress, "int8 against f32", |batch| {
        let want = reference.forward_slice(batch)?;
        let got = quantized.forward_slice(batch)?;
        let classes = want.len() / groups.shape[0];
        let real = (inputs.len() - errors.len()).min(groups.shape[0]);
        for (w, g) in want.chunks(classes).zip(got.chunks(classes)).take(real) {
            same_top1 += usize::from(argmax(w) == argmax(g));
            let range = w.iter().fold(0.0f32, |m, v| m.max(v.abs()));
            let diff = w
                .iter()
                .zip(g)
                .fold(0.0f32, |m, (a, b)| m.max((a - b).abs()));
            errors.push(if range > 0.0 {
                f64::from(diff / range)
            } else {
                0.0
            });
        }
        Ok::<(), Error>(())
    })?;
    errors.sort_by(f64::total_cmp);
    Ok(Agreement {
        images: inputs.len(),
        same_top1,
        max_relative_error: errors.last().copied().unwrap_or(0.0),
        median_relative_error: errors.get(errors.len() / 2).copied().unwrap_or(0.0),
    })
}

fn argmax(v: &[f32]) -> usize {
    (0..v.len()).fold(0, |best, i| if v[i] > v[best] { i } else { best })
}

/// Inputs in batches of one compiled shape; the last batch is filled up with repeats of
/// its own first images (which leaves ranges unchanged).
struct Groups<'a> {
    inputs: &'a [Vec<f32>],
    shape: [usize; 4],
}

impl<'a> Groups<'a> {
    fn new(model: &Vgg, inputs: &'a [Vec<f32>], [h, w]: [usize; 2], batch: usize) -> Result<Self> {
        let c = model.config().in_channels();
        if inputs.is_empty() {
            return Err(Error::BadArgument(
                "calibration needs at least one image".into(),
            ));
        }
        if let Some(bad) = inputs.iter().find(|x| x.len() != c * h * w) {
            return Err(Error::BadArgument(format!(
                "a calibration input has {} values, expected {c}x{h}x{w}",
                bad.len()
            )));
        }
        let n = batch.clamp(1, inputs.len());
        Ok(Groups {
            inputs,
            shape: [n, c, h, w],
        })
    }

    /// Runs `step` on every batch as one phase of `progress`.
    fn each<E>(
        &self,
        progress: &dyn Progress,
        label: &str,
        mut step: impl FnMut(&[f32]) -> std::result::Result<(), E>,
    ) -> Result<()>
    where
        Error: From<E>,
    {
        let n = self.shape[0];
        progress.begin(self.inputs.len(), label);
        for chunk in self.inputs.chunks(n) {
            let batch: Vec<f32> = (0..n)
                .flat_map(|i| chunk[i % chunk.len()].iter().copied())
                .collect();
            step(&batch)?;
            progress.advance(chunk.len(), "");
        }
        progress.end();
        Ok(())
    }
}

/// A model calibrated on images: the model, the calibration inputs and what was measured.
pub struct Calibrated {
    pub model: Vgg,
    pub images: Vec<Vec<f32>>,
    pub calibration: Int8Calibration,
}

/// Opens `source` and calibrates it on up to `limit` images found under `inputs` (files or
/// folders, searched recursively), made by `preprocess`.
pub fn calibrate_on_images(
    source: &ModelSource,
    inputs: &[PathBuf],
    preprocess: &Preprocess,
    limit: usize,
    options: CalibrationOptions,
    progress: &dyn Progress,
) -> Result<Calibrated> {
    let mut paths = collect_images(inputs)?;
    // An image named twice (`--calib a.png --calib a.png`, or a folder and a file in it) is
    // calibrated on once.
    let mut seen = std::collections::HashSet::new();
    paths.retain(|p| seen.insert(std::fs::canonicalize(p).unwrap_or_else(|_| p.clone())));
    if paths.is_empty() {
        let names: Vec<String> = inputs.iter().map(|p| p.display().to_string()).collect();
        return Err(Error::BadArgument(format!(
            "--calib {}: no images found (extensions: {})",
            names.join(", "),
            IMAGE_EXTENSIONS.join(", ")
        )));
    }
    let (model, _) = source.open(&Device::Cpu)?;
    crate::infer::check_takes_images(model.config())?;
    let images = load_images(paths, preprocess, limit)?;
    let size = [preprocess.crop, preprocess.crop];
    let calibration = calibrate(&model, &images, size, options, progress)?;
    Ok(Calibrated {
        model,
        images,
        calibration,
    })
}
