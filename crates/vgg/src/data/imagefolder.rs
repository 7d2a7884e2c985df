//! torchvision's `ImageFolder` layout: one sub-folder per class, classes in sorted order —
//! or mapped to class indices by a class map (e.g. WordNet ids to ImageNet indices).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::data::loader::collect_images;
use crate::error::{Error, Result};
use crate::model::config::MAX_WIDTH;

/// Labelled images: `(path, class index)`, and each class's name by index.
#[derive(Debug, Clone)]
pub struct ImageFolder {
    pub samples: Vec<(PathBuf, usize)>,
    pub classes: Vec<String>,
}

/// Images whose headers [`ImageFolder::common_size`] reads: enough to tell a dataset of one
/// size from a mixed one, cheap on any dataset.
const SIZE_SAMPLE: usize = 64;

impl ImageFolder {
    /// The images' size `(width, height)` when every sampled image (up to 64, spread
    /// evenly over the folder) has the same one, read from the file headers; else `None`.
    pub fn common_size(&self) -> Option<(u32, u32)> {
        let step = self.samples.len().div_ceil(SIZE_SAMPLE).max(1);
        // Unreadable files are left out, as training skips them: one corrupt file must not
        // change the size every other image trains at.
        let mut sizes = (self.samples.iter().step_by(step))
            .filter_map(|(path, _)| image::image_dimensions(path).ok());
        let first = sizes.next()?;
        sizes.all(|size| size == first).then_some(first)
    }

    /// Scans `root`; with `class_map`, folder names are looked up there instead of sorted.
    pub fn open(root: &Path, class_map: Option<&BTreeMap<String, usize>>) -> Result<Self> {
        let entries = std::fs::read_dir(root).map_err(|e| Error::io(root, "cannot list", e))?;
        let mut folders: Vec<PathBuf> = entries
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.is_dir())
            .collect();
        folders.sort();
        if folders.is_empty() {
            return Err(Error::BadArgument(format!(
                "{} has no class folders (expected one sub-folder of images per class)",
                root.display()
            )));
        }
        let names: Vec<String> = folders
            .iter()
            .map(|f| {
                f.file_name()
                    .map_or_else(String::new, |n| n.to_string_lossy().into_owned())
            })
            .collect();
        let mut samples = Vec::new();
        for (position, (folder, name)) in folders.iter().zip(&names).enumerate() {
            let index = match class_map {
                Some(map) => *map.get(name).ok_or_else(|| {
                    Error::BadArgument(format!("class folder `{name}` is not in the class map"))
                })?,
                None => position,
            };
            let images = collect_images(std::slice::from_ref(folder))?;
            if images.is_empty() {
                return Err(Error::BadArgument(format!(
                    "class folder {} holds no images (as torchvision's ImageFolder, every class \
                     needs at least one)",
                    folder.display()
                )));
            }
            samples.extend(images.into_iter().map(|p| (p, index)));
        }
        let classes = match class_map {
            Some(map) => {
                let size = map.values().max().map_or(0, |m| m + 1);
                let mut classes: Vec<String> = (0..size).map(|i| format!("class {i}")).collect();
                for (name, &index) in map {
                    classes[index] = name.clone();
                }
                classes
            }
            None => names,
        };
        Ok(ImageFolder { samples, classes })
    }
}

/// Reads a class map: one class per line, `NAME` (index = line number, as in ImageNet's
/// `LOC_synset_mapping.txt`, where the rest of the line is a description) or `NAME INDEX`.
pub fn read_class_map(path: &Path) -> Result<BTreeMap<String, usize>> {
    let text = crate::io::read_text(path)?;
    let mut map = BTreeMap::new();
    for (line_number, line) in text.lines().filter(|l| !l.trim().is_empty()).enumerate() {
        let mut words = line.split_whitespace();
        let name = words.next().unwrap_or_default().to_string();
        let index = match words.next().map(str::parse::<usize>) {
            Some(Ok(index)) => index,
            _ => line_number,
        };
        if index >= MAX_WIDTH {
            return Err(Error::BadArgument(format!(
                "{}: class index {index} of `{name}` is too large (at most {})",
                path.display(),
                MAX_WIDTH - 1
            )));
        }
        if map.insert(name.clone(), index).is_some() {
            return Err(Error::BadArgument(format!(
                "{}: `{name}` appears twice",
                path.display()
            )));
        }
    }
    Ok(map)
}
