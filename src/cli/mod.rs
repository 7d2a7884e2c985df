//! The `vgg` command line: parse, call the library, print. One file per subcommand.

pub mod args;
pub mod summary;

use clap::{Parser, Subcommand};

use crate::error::Result;

#[derive(Debug, Parser)]
#[command(
    name = "vgg",
    version,
    about = "The VGG family of convolutional networks, in Rust"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Layer-by-layer table of a model, as torchsummary or torchinfo prints it
    Summary(summary::SummaryArgs),
}

/// Runs a parsed command line and returns what it prints.
pub fn run(cli: &Cli) -> Result<String> {
    match &cli.command {
        Command::Summary(args) => summary::run(args),
    }
}
