//! Training and validation data: a CIFAR binary folder, an ImageFolder with `train/` and
//! `val/` sub-folders, or one ImageFolder split by `--val-split`; batches decoded and
//! augmented in parallel on a background thread, one batch ahead of the model.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::mpsc::{Receiver, sync_channel};

use image::RgbImage;
use rand::SeedableRng;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rayon::prelude::*;

use crate::data::augment::{Augment, image_rng};
use crate::data::cifar;
use crate::data::color::{ColorPca, PixelMoments, add_shift};
use crate::data::imagefolder::ImageFolder;
use crate::data::preprocess::Preprocess;
use crate::error::{Error, Result, capped_list};

/// Where a split's images are: files decoded on demand, or images already in memory.
pub enum Images {
    Files(Vec<PathBuf>),
    Decoded(Vec<RgbImage>),
}

/// Labelled images.
pub struct Split {
    pub images: Images,
    pub labels: Vec<usize>,
}

impl Split {
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    fn image(&self, index: usize, preprocess: &Preprocess) -> Result<RgbImage> {
        match &self.images {
            Images::Files(paths) => preprocess.load(&paths[index]),
            Images::Decoded(images) => Ok(images[index].clone()),
        }
    }

    /// A readable name for image `index`, for error messages.
    fn describe(&self, index: usize) -> String {
        match &self.images {
            Images::Files(paths) => paths[index].display().to_string(),
            Images::Decoded(_) => format!("image {index}"),
        }
    }

    fn subset(&self, indices: &[usize]) -> Split {
        let images = match &self.images {
            Images::Files(p) => Images::Files(indices.iter().map(|&i| p[i].clone()).collect()),
            Images::Decoded(d) => Images::Decoded(indices.iter().map(|&i| d[i].clone()).collect()),
        };
        Split {
            images,
            labels: indices.iter().map(|&i| self.labels[i]).collect(),
        }
    }
}

/// A training set, its validation set and the class names.
pub struct TrainingData {
    pub train: Split,
    pub val: Split,
    pub classes: Vec<String>,
    /// How the data was found, for the log: `CIFAR-10 binary`, `ImageFolder train/ + val/`…
    pub layout: String,
}

/// Opens `dir`: CIFAR batches (training batches + test batch), `train/` + `val/` (or
/// `test/`) ImageFolders, or one ImageFolder split per class by `val_split` with `seed`.
pub fn open(dir: &Path, val_split: Option<f64>, seed: u64) -> Result<TrainingData> {
    if !dir.is_dir() {
        return Err(Error::BadArgument(format!(
            "--data {}: no such folder",
            dir.display()
        )));
    }
    if let Some((folder, variant)) = cifar::locate(dir) {
        let (train, val) = (
            cifar::read(&folder, variant, true)?,
            cifar::read(&folder, variant, false)?,
        );
        let decoded = |s: cifar::CifarSplit| Split {
            images: Images::Decoded(s.images),
            labels: s.labels,
        };
        return Ok(TrainingData {
            classes: train.classes.clone(),
            train: decoded(train),
            val: decoded(val),
            layout: format!("{variant:?} binary"),
        });
    }
    let val_dir = ["val", "test"]
        .map(|d| dir.join(d))
        .into_iter()
        .find(|d| d.is_dir());
    match (dir.join("train"), val_dir, val_split) {
        (train_dir, Some(val_dir), None) if train_dir.is_dir() => {
            let (train, val) = (
                ImageFolder::open(&train_dir, None)?,
                ImageFolder::open(&val_dir, None)?,
            );
            if train.classes != val.classes {
                let only = |a: &[String], b: &[String]| -> Vec<String> {
                    a.iter().filter(|c| !b.contains(c)).cloned().collect()
                };
                return Err(Error::BadArgument(format!(
                    "{} and {} have different class folders: only in train/: [{}]; only in \
                     {}/: [{}]",
                    train_dir.display(),
                    val_dir.display(),
                    capped_list(&only(&train.classes, &val.classes), 20),
                    val_dir.file_name().unwrap_or_default().to_string_lossy(),
                    capped_list(&only(&val.classes, &train.classes), 20),
                )));
            }
            Ok(TrainingData {
                train: folder_split(train.samples),
                val: folder_split(val.samples),
                classes: train.classes,
                layout: format!(
                    "ImageFolder train/ + {}/",
                    val_dir.file_name().unwrap_or_default().to_string_lossy()
                ),
            })
        }
        (_, _, Some(fraction)) => split_folder(dir, fraction, seed),
        _ => Err(Error::BadArgument(format!(
            "{} has no validation data: expected CIFAR binary batches, `train/` and `val/` \
             class folders, or class folders with --val-split (e.g. --val-split 0.1)",
            dir.display()
        ))),
    }
}

fn folder_split(samples: Vec<(PathBuf, usize)>) -> Split {
    let (paths, labels) = samples.into_iter().unzip();
    Split {
        images: Images::Files(paths),
        labels,
    }
}

/// Holds out `fraction` of every class (at least one image each), chosen with `seed`.
fn split_folder(dir: &Path, fraction: f64, seed: u64) -> Result<TrainingData> {
    if !(fraction > 0.0 && fraction < 1.0) {
        return Err(Error::BadArgument(format!(
            "--val-split must be between 0 and 1 (exclusive), got {fraction}"
        )));
    }
    let folder = ImageFolder::open(dir, None)?;
    let all = folder_split(folder.samples);
    let mut rng = StdRng::seed_from_u64(seed);
    let (mut train, mut val) = (Vec::new(), Vec::new());
    for class in 0..folder.classes.len() {
        let mut members: Vec<usize> = (0..all.len()).filter(|&i| all.labels[i] == class).collect();
        if members.len() < 2 {
            return Err(Error::BadArgument(format!(
                "class `{}` has {} image(s); --val-split needs at least 2 per class",
                folder.classes[class],
                members.len()
            )));
        }
        members.shuffle(&mut rng);
        let held_out =
            ((members.len() as f64 * fraction).round() as usize).clamp(1, members.len() - 1);
        val.extend_from_slice(&members[..held_out]);
        train.extend_from_slice(&members[held_out..]);
    }
    train.sort_unstable();
    val.sort_unstable();
    Ok(TrainingData {
        train: all.subset(&train),
        val: all.subset(&val),
        classes: folder.classes,
        layout: format!(
            "ImageFolder, {:.0}% of each class held out",
            fraction * 100.0
        ),
    })
}

/// One batch: NCHW pixels, labels, and the images that could not be read.
pub struct Batch {
    pub pixels: Vec<f32>,
    pub labels: Vec<u32>,
    pub skipped: Vec<String>,
}

impl Batch {
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }
}

/// The colour shift of a run: the training set's components and the σ of the coefficients.
#[derive(Debug, Clone)]
pub struct ColorShift {
    pub pca: ColorPca,
    pub sigma: f64,
}

/// Images the colour statistics are computed from: evenly spaced through the split, so a
/// large dataset costs one bounded pass (AlexNet used all of ImageNet; a sample estimates
/// a 3×3 covariance just as well).
pub const COLOR_SAMPLE: usize = 2000;

/// The principal components of the RGB pixel values of (a sample of) `split`'s images,
/// as decoded (before resizing).
pub fn color_pca(split: &Split, preprocess: &Preprocess) -> Result<ColorPca> {
    let step = split.len().div_ceil(COLOR_SAMPLE).max(1);
    let indices: Vec<usize> = (0..split.len()).step_by(step).collect();
    let moments = indices
        .par_iter()
        .filter_map(|&i| split.image(i, preprocess).ok())
        .fold(PixelMoments::default, |mut m, image| {
            m.add(&image);
            m
        })
        .reduce(PixelMoments::default, PixelMoments::merge);
    Ok(ColorPca::from_covariance(moments.covariance()?))
}

/// How one epoch reads a split.
pub struct EpochPlan {
    pub augment: Augment,
    /// The colour shift, drawn per image after the augmentation.
    pub color: Option<Arc<ColorShift>>,
    pub preprocess: Preprocess,
    pub batch_size: usize,
    pub seed: u64,
    pub epoch: usize,
    /// Shuffle the order (training) or keep it (validation).
    pub shuffle: bool,
}

/// Generator streams of an epoch besides the images' own (positions no image takes): the
/// shuffle, and the dropout masks.
pub const SHUFFLE_STREAM: usize = usize::MAX;
pub const DROPOUT_STREAM: usize = usize::MAX - 1;

/// The epoch's sample order: a seeded permutation, or the split's order.
pub fn order(len: usize, plan: &EpochPlan) -> Vec<usize> {
    let mut order: Vec<usize> = (0..len).collect();
    if plan.shuffle {
        order.shuffle(&mut image_rng(plan.seed, plan.epoch, SHUFFLE_STREAM));
    }
    order
}

/// The epoch's batches, prepared on a background thread one batch ahead. A training epoch
/// drops a last batch of one image: batch norm cannot normalise a single value per channel.
pub fn batches(split: Arc<Split>, plan: EpochPlan) -> Receiver<Batch> {
    let (sender, receiver) = sync_channel(1);
    std::thread::spawn(move || {
        let order = order(split.len(), &plan);
        let mut start = 0;
        for chunk in order.chunks(plan.batch_size.max(1)) {
            if plan.shuffle && chunk.len() == 1 && order.len() > 1 {
                break;
            }
            let batch = prepare(&split, chunk, start, &plan);
            start += chunk.len();
            if sender.send(batch).is_err() {
                break; // training stopped
            }
        }
    });
    receiver
}

fn prepare(split: &Split, chunk: &[usize], start: usize, plan: &EpochPlan) -> Batch {
    let tensors: Vec<(usize, Result<Vec<f32>>)> = chunk
        .par_iter()
        .enumerate()
        .map(|(offset, &index)| {
            let mut rng = image_rng(plan.seed, plan.epoch, start + offset);
            let tensor = split
                .image(index, &plan.preprocess)
                .and_then(|image| plan.augment.apply(&image, &plan.preprocess, &mut rng))
                .map(|mut tensor| {
                    if let Some(color) = &plan.color {
                        let shift = color.pca.draw_shift(color.sigma, &mut rng);
                        add_shift(&mut tensor, shift, plan.preprocess.std);
                    }
                    tensor
                });
            (index, tensor)
        })
        .collect();
    let mut batch = Batch {
        pixels: Vec::new(),
        labels: Vec::new(),
        skipped: Vec::new(),
    };
    for (index, tensor) in tensors {
        match tensor {
            Ok(pixels) => {
                batch.pixels.extend_from_slice(&pixels);
                batch.labels.push(split.labels[index] as u32);
            }
            Err(e) => {
                (batch.skipped).push(crate::error::about(&split.describe(index), &e.to_string()))
            }
        }
    }
    batch
}
