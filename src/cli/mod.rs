//! The `vgg` command line: parse, call the library, print. One file per subcommand.

pub mod args;
pub mod bench;
pub mod classify;
pub mod compare;
pub mod convert;
pub mod diagram;
pub mod dissect;
pub mod evaluate;
pub mod features;
pub mod forward;
pub mod images;
pub mod model;
pub mod preprocess;
pub mod progress;
pub mod quantize;
pub mod summary;
pub mod train;
pub mod weights;

use std::io::Write;

use clap::{Parser, Subcommand};

use vgg::error::{Error, Result};

#[derive(Debug, Parser)]
#[command(
    name = "vgg",
    version,
    about = "The VGG family of convolutional networks, in Rust"
)]
pub struct Cli {
    /// Worker threads (default: RAYON_NUM_THREADS, else one per core)
    #[arg(long, global = true, value_name = "T")]
    pub threads: Option<usize>,
    /// Memory budget: requests that would need more (a huge input, batch or image) are refused
    /// before allocating, e.g. 4G or 512M [default: VGG_MEMORY_LIMIT, else 3/4 of the memory
    /// this process may use]
    #[arg(long, global = true, value_name = "SIZE")]
    pub memory_limit: Option<String>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Layer-by-layer table of a model, as torchsummary or torchinfo prints it
    Summary(summary::SummaryArgs),
    /// List a checkpoint's tensors, detect its arch and check it against a model
    Weights(weights::WeightsArgs),
    /// Convert a checkpoint between formats (.pth -> .safetensors, timm <-> torchvision names)
    Convert(convert::ConvertArgs),
    /// Run the network on an NCHW .npy array and write the logits or a layer's activation
    Forward(forward::ForwardArgs),
    /// Write the exact input tensor the model sees for some images (.npy)
    Preprocess(preprocess::PreprocessCmd),
    /// Top-k classes for image files and folders
    Classify(classify::ClassifyArgs),
    /// Top-1 / top-5 accuracy on an ImageFolder dataset
    Evaluate(evaluate::EvaluateArgs),
    /// Activations of any layer for each image (.npy or .safetensors)
    Features(features::FeaturesArgs),
    /// An HTML report of one image's trip through the network: feature maps, filters, Grad-CAM
    Dissect(dissect::DissectArgs),
    /// Calibrate a checkpoint for int8 (--precision int8): per-layer ranges and errors, written beside the weights
    Quantize(quantize::QuantizeArgs),
    /// Time forward passes on the fast engine or the reference path
    Bench(bench::BenchArgs),
    /// The eight variants side by side: layers, parameters, GFLOPS, memory, accuracy
    Compare(compare::CompareArgs),
    /// Architecture diagram of one model or all eight (.svg or .png)
    Diagram(diagram::DiagramArgs),
    /// Train from scratch, fine-tune a checkpoint, or resume a run (CIFAR or ImageFolder)
    Train(Box<train::TrainArgs>),
}

/// How a command ended when it did not fail outright.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Success,
    /// Some inputs (images) failed and were skipped, the rest were processed; or a check
    /// (does this checkpoint fit that model?) said no.
    PartialFailure,
}

/// Runs a parsed command line, printing results to `out` as they are produced.
pub fn run(cli: &Cli, out: &mut dyn Write) -> Result<Outcome> {
    if let Some((threads, source)) = thread_request(cli.threads)? {
        set_threads(threads, source)?;
    }
    set_memory_limit(cli.memory_limit.as_deref())?;
    // After the environment is set: the watcher is the process's first other thread.
    if let Err(err) = vgg::io::remove_temporaries_on_signals() {
        eprintln!("warning: {err}");
    }
    let text = match &cli.command {
        Command::Summary(args) => summary::run(args)?,
        Command::Weights(args) => {
            let (text, fits) = weights::run(args)?;
            out.write_all(text.as_bytes())
                .map_err(|e| Error::io(std::path::Path::new("stdout"), "cannot write to", e))?;
            return Ok(outcome(fits));
        }
        Command::Convert(args) => convert::run(args)?,
        Command::Forward(args) => forward::run(args)?,
        Command::Preprocess(args) => preprocess::run(args)?,
        Command::Features(args) => features::run(args)?,
        Command::Dissect(args) => dissect::run(args)?,
        Command::Bench(args) => bench::run(args)?,
        Command::Quantize(args) => quantize::run(args)?,
        Command::Compare(args) => compare::run(args)?,
        Command::Diagram(args) => diagram::run(args)?,
        Command::Train(args) => train::run(args)?,
        Command::Classify(args) => return Ok(outcome(classify::run(args, out)?)),
        Command::Evaluate(args) => return Ok(outcome(evaluate::run(args, out)?)),
    };
    out.write_all(text.as_bytes())
        .map_err(|e| Error::io(std::path::Path::new("stdout"), "cannot write to", e))?;
    Ok(Outcome::Success)
}

/// The thread count asked for and where: `--threads`, else `RAYON_NUM_THREADS` (which
/// rayon would otherwise read unchecked: a huge count spawned threads until it failed);
/// its 0, as rayon reads it, means one per core.
fn thread_request(flag: Option<usize>) -> Result<Option<(usize, &'static str)>> {
    if let Some(threads) = flag {
        return Ok(Some((threads, "--threads")));
    }
    let Ok(text) = std::env::var("RAYON_NUM_THREADS") else {
        return Ok(None);
    };
    match text.trim().parse::<usize>() {
        Ok(0) => Ok(None),
        Ok(threads) => Ok(Some((threads, "RAYON_NUM_THREADS"))),
        Err(_) => Err(Error::BadArgument(format!(
            "RAYON_NUM_THREADS: expected a number of threads, got `{text}`"
        ))),
    }
}

/// Sizes the library's thread pool, and candle's (which reads the environment), to the
/// `threads` that `source` asked for.
fn set_threads(threads: usize, source: &str) -> Result<()> {
    let cap = vgg::threads::MAX_THREADS;
    if threads > cap {
        eprintln!("note: {source} {threads} is capped at {cap}");
    }
    let threads = threads.min(cap);
    if threads > 0 {
        // SAFETY: called before any other thread exists.
        unsafe { std::env::set_var("RAYON_NUM_THREADS", threads.to_string()) };
    }
    vgg::threads::set_num_threads(threads).map_err(|e| match e {
        Error::BadArgument(why) => Error::BadArgument(format!("{source}: {why}")),
        other => other,
    })
}

/// Sets the library's memory budget from --memory-limit, else from VGG_MEMORY_LIMIT.
fn set_memory_limit(flag: Option<&str>) -> Result<()> {
    let from_env = std::env::var("VGG_MEMORY_LIMIT").ok();
    let (text, source) = match (flag, from_env.as_deref()) {
        (Some(text), _) => (text, "--memory-limit"),
        (None, Some(text)) => (text, "VGG_MEMORY_LIMIT"),
        (None, None) => return Ok(()),
    };
    let bytes = vgg::limits::parse_size(text).map_err(|e| match e {
        Error::BadArgument(why) => Error::BadArgument(format!("{source}: {why}")),
        other => other,
    })?;
    vgg::limits::set_memory_budget(Some(bytes))
}

fn outcome(all_ok: bool) -> Outcome {
    if all_ok {
        Outcome::Success
    } else {
        Outcome::PartialFailure
    }
}
