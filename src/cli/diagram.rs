//! `vgg diagram`: an architecture diagram (SVG or PNG) of one model or all eight.

use std::path::PathBuf;

use clap::Args;

use crate::cli::args::{ModelArgs, parse_shape};
use vgg::error::{Error, Result};
use vgg::model::{Arch, VggConfig};
use vgg::viz::diagram::{diagram, write};

#[derive(Debug, Args)]
pub struct DiagramArgs {
    /// vgg11 … vgg19_bn or custom (omit with --all)
    #[arg(required_unless_present = "all")]
    pub arch: Option<String>,
    /// All eight torchvision models side by side
    #[arg(long, conflicts_with = "arch")]
    pub all: bool,
    #[command(flatten)]
    pub model: ModelArgs,
    /// Input shape CxHxW: the spatial sizes shown
    #[arg(long, default_value = "3x224x224", allow_hyphen_values = true)]
    pub input: String,
    /// Output file: .svg or .png
    #[arg(long, value_name = "FILE")]
    pub out: PathBuf,
}

pub fn run(args: &DiagramArgs) -> Result<String> {
    vgg::io::check_output(&args.out, &[])?;
    let [c, h, w] = *parse_shape(&args.input)?.as_slice() else {
        return Err(Error::BadArgument(format!(
            "--input `{}`: expected CxHxW",
            args.input
        )));
    };
    let configs = match &args.arch {
        Some(arch) => vec![args.model.config(arch)?],
        None => match args.model.first_given() {
            Some(flag) => {
                return Err(Error::BadArgument(format!(
                    "{flag} changes one model; --all draws torchvision's eight as they are"
                )));
            }
            None => Arch::ALL.into_iter().map(VggConfig::from_arch).collect(),
        },
    };
    write(&args.out, &diagram(&configs, [c, h, w])?)?;
    Ok(format!("diagram written to {}\n", args.out.display()))
}
