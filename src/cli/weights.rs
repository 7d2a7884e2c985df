//! `vgg weights FILE`: what a checkpoint holds and which model it fits.

use std::path::PathBuf;

use clap::Args;

use crate::cli::args::ModelArgs;
use vgg::error::Result;
use vgg::weights::Shapes;
use vgg::weights::inspect::Inspection;

#[derive(Debug, Args)]
pub struct WeightsArgs {
    /// Checkpoint: .pth (zip or legacy), .safetensors, a `vgg train` checkpoint or .onnx
    pub file: PathBuf,
    /// Check against this arch instead of the detected one (`auto`: the detected one, with
    /// the flags' changes)
    #[arg(long)]
    pub arch: Option<String>,
    #[command(flatten)]
    pub model: ModelArgs,
}

/// The report, and whether the checkpoint fits the model checked (true when none was).
pub fn run(args: &WeightsArgs) -> Result<(String, bool)> {
    // Model flags without --arch change the detected network, as with `--arch auto`.
    let arch = (args.arch.as_deref()).or(args.model.first_given().map(|_| "auto"));
    let source = arch.map(|arch| args.model.source(arch, None)).transpose()?;
    let model = |shapes: &Shapes| match &source {
        Some(source) => source.config(Some(shapes)).map(Some),
        None => Ok(None),
    };
    let inspection = Inspection::read(&args.file, model)?;
    Ok((inspection.to_string(), inspection.fits()))
}
