//! `vgg preprocess`: the exact NCHW tensor the model would see, for checking pipelines.

use std::path::PathBuf;

use candle_core::{Device, Tensor};
use clap::Args;

use crate::cli::images::PreprocessArgs;
use vgg::error::Result;
use vgg::io::write_atomically;

#[derive(Debug, Args)]
pub struct PreprocessCmd {
    /// Images, stacked in argument order
    #[arg(required = true)]
    pub images: Vec<PathBuf>,
    /// Output array (.npy, float32 NCHW)
    #[arg(long, value_name = "FILE")]
    pub output: PathBuf,
    #[command(flatten)]
    pub preprocess: PreprocessArgs,
}

pub fn run(args: &PreprocessCmd) -> Result<String> {
    let inputs: Vec<&std::path::Path> = args.images.iter().map(|p| p.as_path()).collect();
    vgg::io::check_output(&args.output, &inputs)?;
    vgg::io::check_npy_output(&args.output, "the preprocessed tensor")?;
    let preprocess = args.preprocess.preprocess()?;
    let mut data = Vec::new();
    for path in &args.images {
        data.extend(preprocess.apply(&preprocess.load(path)?)?);
    }
    let crop = preprocess.crop;
    let tensor = Tensor::from_vec(data, (args.images.len(), 3, crop, crop), &Device::Cpu)?;
    write_atomically(&args.output, |tmp| Ok(tensor.write_npy(tmp)?))?;
    Ok(format!(
        "{:?} written to {}\n",
        tensor.dims(),
        args.output.display()
    ))
}
