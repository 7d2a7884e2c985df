//! `classify`: top-k classes for image files, batch by batch, with the images that cannot be
//! read reported one by one rather than stopping the run.

use std::path::PathBuf;

use image::RgbImage;

use crate::data::loader::batches_with;
use crate::data::preprocess::Preprocess;
use crate::error::{Error, Result};
use crate::infer::{Classifier, Prediction, Prepared, top_k};
use crate::progress::Progress;

/// One image's outcome.
pub struct Classified {
    pub path: PathBuf,
    /// The `top` most probable classes, most probable first; or why the image was skipped.
    pub result: Result<Vec<Prediction>>,
}

/// Classifies `paths` in order, calling `each` with every image's outcome as soon as its
/// batch is done. Returns whether every image was classified.
pub fn classify(
    classifier: &mut Classifier,
    paths: Vec<PathBuf>,
    preprocess: Preprocess,
    batch_size: usize,
    top: usize,
    progress: &dyn Progress,
    mut each: impl FnMut(Classified) -> Result<()>,
) -> Result<bool> {
    if batch_size == 0 || top == 0 {
        return Err(Error::BadArgument(
            "the batch size and top-k must be at least 1".into(),
        ));
    }
    if paths.is_empty() {
        return Err(no_images());
    }
    progress.begin(paths.len(), "images");
    let crop = preprocess.crop;
    let preparation = classifier.preparation(&preprocess);
    let mut all_ok = true;
    let loaded = batches_with(paths, batch_size, move |path| {
        preparation.prepare(&preparation.preprocess.load(path)?)
    });
    for batch in loaded {
        let good: Vec<&Prepared> = batch.iter().filter_map(|(_, r)| r.as_ref().ok()).collect();
        let mut probs = classifier.posteriors(&good, crop)?.into_iter();
        let done = batch.len();
        for (path, decoded) in batch {
            let result = match decoded {
                Ok(_) => Ok(top_k(&probs.next().unwrap_or_default(), top)),
                Err(e) => Err(e),
            };
            all_ok &= result.is_ok();
            each(Classified { path, result })?;
        }
        progress.advance(done, "");
    }
    progress.end();
    Ok(all_ok)
}

/// The `top` most probable classes of each decoded image, in batches of `batch_size`.
pub fn classify_images(
    classifier: &mut Classifier,
    images: &[RgbImage],
    preprocess: &Preprocess,
    batch_size: usize,
    top: usize,
) -> Result<Vec<Vec<Prediction>>> {
    if batch_size == 0 || top == 0 {
        return Err(Error::BadArgument(
            "the batch size and top-k must be at least 1".into(),
        ));
    }
    let mut results = Vec::with_capacity(images.len());
    let preparation = classifier.preparation(preprocess);
    for chunk in images.chunks(batch_size) {
        let inputs = chunk
            .iter()
            .map(|image| preparation.prepare(image))
            .collect::<Result<Vec<_>>>()?;
        let prepared: Vec<&Prepared> = inputs.iter().collect();
        let probs = classifier.posteriors(&prepared, preprocess.crop)?;
        results.extend(probs.iter().map(|p| top_k(p, top)));
    }
    Ok(results)
}

/// The error for a run that found nothing to classify.
pub fn no_images() -> Error {
    Error::BadArgument(format!(
        "no images found (files ending {}; folders are searched recursively)",
        crate::data::loader::IMAGE_EXTENSIONS
            .map(|e| format!(".{e}"))
            .join(", ")
    ))
}
