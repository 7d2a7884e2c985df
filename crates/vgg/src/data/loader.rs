//! Turning paths into preprocessed batches: images decode in parallel (rayon) on a background
//! thread, one batch ahead of the model, so decoding overlaps inference.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::mpsc::{Receiver, sync_channel};

use rayon::prelude::*;

use crate::data::preprocess::Preprocess;
use crate::error::{Error, Result};

/// Extensions picked up when a folder is given (files named explicitly are always tried).
pub const IMAGE_EXTENSIONS: [&str; 7] = ["jpg", "jpeg", "png", "webp", "bmp", "gif", "jfif"];

/// One image's outcome: its CHW tensor, or why it could not be read.
pub type Decoded = (PathBuf, Result<Vec<f32>>);

/// One image's outcome: what `prepare` made of it, or why it could not be read.
pub type Loaded<T> = (PathBuf, Result<T>);

/// Expands files and folders (recursively, sorted) into image paths. Folders are walked
/// once each, however links loop (`a -> .`), and only regular files are picked up from them
/// (a FIFO named `x.jpg` is passed over); a file named directly must be a regular file.
pub fn collect_images(inputs: &[PathBuf]) -> Result<Vec<PathBuf>> {
    let mut paths = Vec::new();
    let mut visited = HashSet::new();
    for input in inputs {
        if input.is_dir() {
            let mut found = Vec::new();
            walk(input, &mut visited, &mut found)?;
            found.sort();
            paths.extend(found);
        } else {
            crate::io::check_regular(input, "cannot read")?;
            paths.push(input.clone());
        }
    }
    Ok(paths)
}

fn walk(dir: &Path, visited: &mut HashSet<PathBuf>, found: &mut Vec<PathBuf>) -> Result<()> {
    let canonical = std::fs::canonicalize(dir).map_err(|e| Error::io(dir, "cannot list", e))?;
    if !visited.insert(canonical) {
        return Ok(()); // reached again through a link
    }
    let entries = std::fs::read_dir(dir).map_err(|e| Error::io(dir, "cannot list", e))?;
    for entry in entries {
        let path = entry.map_err(|e| Error::io(dir, "cannot list", e))?.path();
        // Following links: a broken one has no metadata and is passed over.
        let Ok(metadata) = std::fs::metadata(&path) else {
            continue;
        };
        if metadata.is_dir() {
            walk(&path, visited, found)?;
        } else if metadata.is_file() && has_image_extension(&path) {
            found.push(path);
        }
    }
    Ok(())
}

pub fn has_image_extension(path: &Path) -> bool {
    crate::io::extension(path).is_some_and(|e| IMAGE_EXTENSIONS.contains(&e.as_str()))
}

/// Decodes and preprocesses `paths` in batches of `batch_size`, in order, on a background
/// thread that stays one batch ahead of the consumer.
pub fn batches(
    paths: Vec<PathBuf>,
    preprocess: Preprocess,
    batch_size: usize,
) -> Receiver<Vec<Decoded>> {
    batches_with(paths, batch_size, move |path| {
        preprocess
            .load(path)
            .and_then(|image| preprocess.apply(&image))
    })
}

/// Runs `prepare` on `paths` in batches of `batch_size`, in order and in parallel, on a
/// background thread that stays one batch ahead of the consumer.
pub fn batches_with<T: Send + 'static>(
    paths: Vec<PathBuf>,
    batch_size: usize,
    prepare: impl Fn(&Path) -> Result<T> + Send + Sync + 'static,
) -> Receiver<Vec<Loaded<T>>> {
    let (sender, receiver) = sync_channel(1);
    std::thread::spawn(move || {
        for chunk in paths.chunks(batch_size.max(1)) {
            let batch: Vec<Loaded<T>> = chunk
                .par_iter()
                .map(|path| (path.clone(), prepare(path)))
                .collect();
            if sender.send(batch).is_err() {
                break; // the consumer stopped
            }
        }
    });
    receiver
}
