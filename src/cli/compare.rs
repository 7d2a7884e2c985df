//! `vgg compare`: the eight variants side by side.

use clap::{Args, ValueEnum};

use crate::cli::args::parse_shape;
use vgg::error::{Error, Result};
use vgg::summary::compare::{Format, compare, render};

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum CompareFormat {
    Table,
    Markdown,
    Csv,
    Json,
}

#[derive(Debug, Args)]
pub struct CompareArgs {
    /// Input shape CxHxW for GFLOPS and activation memory
    #[arg(long, default_value = "3x224x224", allow_hyphen_values = true)]
    pub input: String,
    #[arg(long, value_enum, default_value_t = CompareFormat::Table)]
    pub format: CompareFormat,
}

pub fn run(args: &CompareArgs) -> Result<String> {
    let [c, h, w] = *parse_shape(&args.input)?.as_slice() else {
        return Err(Error::BadArgument(format!(
            "--input `{}`: compare takes one image shape, CxHxW",
            args.input
        )));
    };
    let format = match args.format {
        CompareFormat::Table => Format::Table,
        CompareFormat::Markdown => Format::Markdown,
        CompareFormat::Csv => Format::Csv,
        CompareFormat::Json => Format::Json,
    };
    Ok(render(&compare([c, h, w])?, format))
}
