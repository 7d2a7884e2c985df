//! `vgg quantize`: calibrate a checkpoint for int8 and write it with its calibration.

use std::fmt::Write as _;
use std::path::PathBuf;

use clap::Args;

use crate::cli::images::PreprocessArgs;
use crate::cli::progress::Bar;
use vgg::error::{Error, Result};
use vgg::open::ModelSource;
use vgg::quantize::{CalibrationOptions, agreement, calibrate_on_images};
use vgg::weights::recorded::{Int8Calibration, Recorded};
use vgg::weights::{self};

#[derive(Debug, Args)]
pub struct QuantizeArgs {
    /// Checkpoint to calibrate: .pth, .safetensors, a `vgg train` checkpoint or .onnx
    pub weights: PathBuf,
    /// Calibration images: a folder (searched recursively, e.g. an ImageFolder's train
    /// split) or an image file; repeat the flag for more
    #[arg(long, value_name = "DIR", required = true)]
    pub calib: Vec<PathBuf>,
    /// Calibrate on the first N images found (in folder order)
    #[arg(long, value_name = "N", default_value_t = 128)]
    pub images: usize,
    /// Images per engine run
    #[arg(long, default_value_t = 8)]
    pub batch_size: usize,
    /// Keep a layer in f32 when its relative RMS error in int8 (‖int8 − f32‖ / ‖f32‖ of
    /// its outputs, fed the same input) is above this
    #[arg(long, allow_negative_numbers = true, value_name = "E", default_value_t = CalibrationOptions::default().max_error)]
    pub max_error: f64,
    /// Where to write the weights with their calibration (.safetensors)
    #[arg(long, value_name = "FILE")]
    pub out: PathBuf,
    #[command(flatten)]
    pub preprocess: PreprocessArgs,
}

pub fn run(args: &QuantizeArgs) -> Result<String> {
    check_args(args)?;
    let source = ModelSource::checkpoint(&args.weights);
    let preprocess = args.preprocess.preprocess_for(&source)?;
    let bar = Bar::default();
    let (dirs, limit) = (&args.calib, args.images);
    let calibrated = calibrate_on_images(&source, dirs, &preprocess, limit, options(args), &bar)?;
    let size = [preprocess.crop, preprocess.crop];
    let (model, images, batch) = (&calibrated.model, &calibrated.images, args.batch_size);
    let agreement = agreement(model, &calibrated.calibration, images, size, batch, &bar)?;
    let state = weights::read(&args.weights)?;
    let recorded = Recorded {
        config: Some(model.config().clone()),
        // How the model was trained, if its file says: the calibration's own preprocessing
        // is not, and recording it would change how f32 commands evaluate the file.
        preprocess: weights::recorded_preprocess(&args.weights)?,
        classes: weights::recorded_class_names(&args.weights)?,
        int8: Some(calibrated.calibration.clone()),
    };
    weights::write_recording(&args.out, &state.tensors, &recorded)?;
    let mut out = report(&calibrated.calibration);
    let _ = writeln!(
        out,
        "int8 against f32 on the {} calibration images: same top-1 class on {} ({:.2}%), \
         relative logit error median {:.2e}, max {:.2e}",
        agreement.images,
        agreement.same_top1,
        100.0 * agreement.same_top1 as f64 / agreement.images as f64,
        agreement.median_relative_error,
        agreement.max_relative_error,
    );
    let _ = writeln!(out, "wrote {}", args.out.display());
    Ok(out)
}

fn options(args: &QuantizeArgs) -> CalibrationOptions {
    CalibrationOptions {
        batch: args.batch_size,
        max_error: args.max_error,
    }
}

/// Refuses bad flags before any weights or images are read.
fn check_args(args: &QuantizeArgs) -> Result<()> {
    if vgg::io::extension(&args.out).as_deref() != Some("safetensors") {
        return Err(Error::BadArgument(format!(
            "--out {}: the calibration is stored in a safetensors file's metadata; give a \
             .safetensors path",
            args.out.display()
        )));
    }
    vgg::io::check_output(&args.out, &[&args.weights])?;
    if args.images == 0 {
        return Err(Error::BadArgument("--images must be at least 1".into()));
    }
    options(args).validate()
}

/// One line per layer: its input range, its error in int8, and what it computes in.
pub fn report(calibration: &Int8Calibration) -> String {
    let width = (calibration.layers.iter())
        .map(|l| l.path.len())
        .max()
        .unwrap_or(0)
        .max(5);
    let images = match calibration.images {
        1 => "1 image".to_string(),
        n => format!("{n} images"),
    };
    let mut out = format!(
        "calibrated on {images} at {}x{}\n{:<width$}  {:>21}  {:>8}  {:>9}  computes in\n",
        calibration.size[0], calibration.size[1], "layer", "input range", "rel. RMS", "max/range"
    );
    for l in &calibration.layers {
        let percent = |v: Option<f64>| v.map_or("-".to_string(), |v| format!("{:.2}%", 100.0 * v));
        let precision = match &l.kept_because {
            None => "int8".to_string(),
            Some(why) => format!("f32 ({why})"),
        };
        let _ = writeln!(
            out,
            "{:<width$}  [{:>9.3}, {:>9.3}]  {:>8}  {:>9}  {precision}",
            l.path,
            l.input_min,
            l.input_max,
            percent(l.relative_rms),
            percent(l.max_over_range),
        );
    }
    out
}
