//! `vgg weights FILE`: what a checkpoint holds and which model it fits.

use std::path::PathBuf;

use clap::Args;

use crate::cli::args::ModelArgs;
use vgg::error::Result;
use vgg::weights::inspect::Inspection;

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
    let model = args
        .arch
        .as_deref()
        .map(|arch| args.model.config(arch))
        .transpose()?;
    let inspection = Inspection::read(&args.file, model)?;
    Ok((inspection.to_string(), inspection.fits()))
}
