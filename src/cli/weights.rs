//! `vgg weights FILE`: what a checkpoint holds and which model it fits.

use std::path::PathBuf;

use clap::Args;

use crate::cli::args::ModelArgs;
use vgg::error::Result;
use vgg::summary::with_commas;
use vgg::weights::{self, detect::detect_config, load::check};

#[derive(Debug, Args)]
pub struct WeightsArgs {
    /// Checkpoint: .pth (zip or legacy) or .safetensors
    pub file: PathBuf,
    /// Check against this arch instead of the detected one
    #[arg(long)]
    pub arch: Option<String>,
    #[command(flatten)]
    pub model: ModelArgs,
}

/// The report, and whether the checkpoint fits the model checked (true when none was).
pub fn run(args: &WeightsArgs) -> Result<(String, bool)> {
    let state = weights::read(&args.file)?;
    let mut out = format!(
        "{}: {}, {} tensors\n",
        args.file.display(),
        state.format.describe(),
        state.tensors.len()
    );
    for note in &state.notes {
        out += &format!("note: {note}\n");
    }
    let width = state.keys().map(str::len).max().unwrap_or(0);
    for (key, tensor) in &state.tensors {
        let dtype = format!("{:?}", tensor.dtype()).to_lowercase();
        out += &format!("  {key:<width$}  {dtype:<4}  {:?}\n", tensor.dims());
    }
    out += &format!("parameters: {}\n", with_commas(state.num_params() as i128));
    let detected = detect_config(&state.shapes());
    match &detected {
        Ok(c) => {
            out += &format!(
                "detected: {}{} (num_classes {}, in_channels {}, pool {}, head {})\n",
                c.name(),
                if c.name() == "custom" {
                    format!(
                        " --cfg {}{}",
                        vgg::model::config::cfg_string(c.features()),
                        if c.batch_norm() { " --batch-norm" } else { "" }
                    )
                } else {
                    String::new()
                },
                c.num_classes(),
                c.in_channels(),
                c.pool(),
                vgg::model::head::head_string(c.head()),
            )
        }
        Err(e) => out += &format!("detected: nothing ({e})\n"),
    }
    if let Some(p) = vgg::weights::recorded_preprocess(&args.file) {
        let three = |v: [f32; 3]| v.map(|x| x.to_string()).join(",");
        out += &format!(
            "preprocessing (trained with; the default of classify, evaluate, features and \
             dissect): --resize {} --crop {} --mean {} --std {}\n",
            p.resize,
            p.crop,
            three(p.mean),
            three(p.std)
        );
    }
    match vgg::weights::recorded_int8(&args.file) {
        Ok(Some(calibration)) => {
            let int8: Vec<&str> = (calibration.layers.iter())
                .filter(|l| l.int8)
                .map(|l| l.path.as_str())
                .collect();
            out += &format!(
                "int8 calibration (`--precision int8`; `vgg quantize` wrote it): {} of {} layers \
                 in int8, calibrated on {} images at {}x{}: {}\n",
                int8.len(),
                calibration.layers.len(),
                calibration.images,
                calibration.size[0],
                calibration.size[1],
                int8.join(", ")
            );
        }
        Ok(None) => {}
        Err(e) => out += &format!("int8 calibration: unusable ({e})\n"),
    }
    let config = match &args.arch {
        Some(arch) => args.model.config(arch)?,
        None => match detected {
            Ok(c) => c,
            Err(_) => return Ok((out, true)),
        },
    };
    let report = check(&config, &state.shapes());
    let fits = report.is_exact();
    if fits {
        out += &format!(
            "matches {}: yes, every key and shape fits (strict load)\n",
            config.name()
        );
    } else {
        out += &format!("matches {}: no\n{report}\n", config.name());
    }
    Ok((out, fits))
}
