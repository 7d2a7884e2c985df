//! `features`: one layer's activations for each image (transfer learning, perceptual losses),
//! stacked into one `.npy` or keyed by file name in a `.safetensors`.

use std::path::{Path, PathBuf};

use candle_core::{Device, Tensor};

use crate::data::loader::batches;
use crate::data::preprocess::Preprocess;
use crate::error::{Error, Result};
use crate::infer::stack;
use crate::io::write_atomically;
use crate::limits::{array_bytes, reserve};
use crate::model::layers::propagate_shapes;
use crate::model::{Mode, Vgg};
use crate::weights;

/// How activations are stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FeatureFile {
    /// One `[N, …]` array, rows in input order.
    Npy,
    /// One tensor per image, keyed by its path.
    Safetensors,
}

impl FeatureFile {
    /// The format `path`'s extension names.
    pub fn for_path(path: &Path) -> Result<Self> {
        match crate::io::extension(path).as_deref() {
            Some("npy") => Ok(FeatureFile::Npy),
            Some("safetensors") => Ok(FeatureFile::Safetensors),
            _ => Err(Error::BadArgument(format!(
                "{}: expected a .npy or .safetensors file for the features",
                path.display()
            ))),
        }
    }
}

/// The activations of module `layer` (`features.29`, `avgpool`, `classifier.4`, …) for each
/// image, keyed by its path. An image that cannot be read is an error naming it.
pub fn extract_features(
    model: &Vgg,
    paths: Vec<PathBuf>,
    preprocess: Preprocess,
    layer: &str,
    batch_size: usize,
) -> Result<Vec<(String, Tensor)>> {
    if paths.is_empty() {
        return Err(crate::infer::classify::no_images());
    }
    crate::infer::check_takes_images(model.config())?;
    let size = preprocess.crop;
    // Every image's activation is kept, then stacked into one more copy to be written.
    let index = model.layer_index(layer)?;
    let chw = [model.config().in_channels(), size, size];
    let shapes = propagate_shapes(model.config(), model.layers(), chw)?;
    let per_image = array_bytes(&shapes[index].output, 4);
    let images = paths.len() as u64;
    reserve(
        per_image.and_then(|b| b.checked_mul(images)?.checked_mul(2)),
        || format!("the {layer} activations of {images} images at {size}x{size}"),
    )?;
    let mut rows = Vec::new();
    for batch in batches(paths, preprocess, batch_size.max(1)) {
        let mut names = Vec::new();
        let mut images = Vec::new();
        for (path, decoded) in batch {
            images.push(decoded?);
            names.push(path.display().to_string());
        }
        let slices: Vec<&[f32]> = images.iter().map(Vec::as_slice).collect();
        let x = stack(&slices, size, size, false, &Device::Cpu)?;
        let activations = model.forward_to(&x, Mode::Eval, Some(layer))?;
        for (i, name) in names.into_iter().enumerate() {
            rows.push((name, activations.get(i)?));
        }
    }
    Ok(rows)
}

/// Writes `rows` in the format `path`'s extension names: stacked into one `.npy`, or one
/// tensor per key in a `.safetensors`.
pub fn write_features(path: &Path, rows: &[(String, Tensor)]) -> Result<()> {
    match FeatureFile::for_path(path)? {
        FeatureFile::Npy => {
            let stacked = Tensor::stack(&rows.iter().map(|(_, t)| t).collect::<Vec<_>>(), 0)?;
            write_atomically(path, |tmp| Ok(stacked.write_npy(tmp)?))
        }
        FeatureFile::Safetensors => {
            if let Some(name) = weights::first_repeated_name(rows) {
                return Err(Error::BadArgument(format!(
                    "cannot write {}: image `{name}` is given twice, and a .safetensors output \
                     keys each image by its path (a .npy output stacks them in order)",
                    path.display()
                )));
            }
            weights::write(path, rows)
        }
    }
}
