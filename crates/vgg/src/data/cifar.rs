//! The CIFAR-10 / CIFAR-100 binary format (`cifar-10-batches-bin`, `cifar-100-binary`): records
//! of a label byte (CIFAR-100: coarse then fine label) and a 32×32 image as three 1024-byte
//! planes, red, green, blue.

use std::path::{Path, PathBuf};

use image::RgbImage;

use crate::error::{Error, Result};

const SIDE: u32 = 32;
const PIXELS: usize = (SIDE * SIDE) as usize;

/// Which CIFAR a folder holds, told apart by its file names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Variant {
    Cifar10,
    Cifar100,
}

impl Variant {
    /// Bytes before the image in each record.
    fn label_bytes(self) -> usize {
        match self {
            Variant::Cifar10 => 1,
            Variant::Cifar100 => 2,
        }
    }

    fn record_len(self) -> usize {
        self.label_bytes() + 3 * PIXELS
    }

    fn files(self, train: bool) -> Vec<&'static str> {
        match (self, train) {
            (Variant::Cifar10, true) => vec![
                "data_batch_1.bin",
                "data_batch_2.bin",
                "data_batch_3.bin",
                "data_batch_4.bin",
                "data_batch_5.bin",
            ],
            (Variant::Cifar10, false) => vec!["test_batch.bin"],
            (Variant::Cifar100, true) => vec!["train.bin"],
            (Variant::Cifar100, false) => vec!["test.bin"],
        }
    }

    fn class_file(self) -> (&'static str, usize) {
        match self {
            Variant::Cifar10 => ("batches.meta.txt", 10),
            Variant::Cifar100 => ("fine_label_names.txt", 100),
        }
    }
}

/// The CIFAR variant stored in `dir`, if it holds one.
pub fn detect(dir: &Path) -> Option<Variant> {
    if dir.join("data_batch_1.bin").is_file() {
        Some(Variant::Cifar10)
    } else if dir.join("train.bin").is_file() && dir.join("test.bin").is_file() {
        Some(Variant::Cifar100)
    } else {
        None
    }
}

/// One split of a CIFAR folder, decoded: images, (fine) labels and class names.
pub struct CifarSplit {
    pub images: Vec<RgbImage>,
    pub labels: Vec<usize>,
    pub classes: Vec<String>,
}

/// Reads the training (`data_batch_1…5.bin` / `train.bin`) or test split of `dir`.
pub fn read(dir: &Path, variant: Variant, train: bool) -> Result<CifarSplit> {
    let classes = class_names(dir, variant);
    let (mut images, mut labels) = (Vec::new(), Vec::new());
    for name in variant.files(train) {
        let path = dir.join(name);
        // The bytes, and the decoded images beside them.
        let bytes = crate::io::read_regular(&path, 2)?;
        parse_records(
            &path,
            &bytes,
            variant,
            classes.len(),
            &mut images,
            &mut labels,
        )?;
    }
    Ok(CifarSplit {
        images,
        labels,
        classes,
    })
}

fn parse_records(
    path: &Path,
    bytes: &[u8],
    variant: Variant,
    num_classes: usize,
    images: &mut Vec<RgbImage>,
    labels: &mut Vec<usize>,
) -> Result<()> {
    let record = variant.record_len();
    if bytes.is_empty() || !bytes.len().is_multiple_of(record) {
        return Err(corrupt(
            path,
            format!(
                "{} bytes is not a whole number of {record}-byte records",
                bytes.len()
            ),
        ));
    }
    for (i, chunk) in bytes.chunks_exact(record).enumerate() {
        let label = chunk[variant.label_bytes() - 1] as usize;
        if label >= num_classes {
            return Err(corrupt(
                path,
                format!("record {i} has label {label}, but there are {num_classes} classes"),
            ));
        }
        let planes = &chunk[variant.label_bytes()..];
        let pixels = (0..PIXELS)
            .flat_map(|p| [planes[p], planes[PIXELS + p], planes[2 * PIXELS + p]])
            .collect();
        images.push(RgbImage::from_raw(SIDE, SIDE, pixels).expect("32·32·3 bytes"));
        labels.push(label);
    }
    Ok(())
}

fn corrupt(path: &Path, why: String) -> Error {
    Error::BadArgument(format!(
        "{}: not a CIFAR binary batch: {why}",
        path.display()
    ))
}

/// Class names from the folder's label file, or `class 0…` when it is missing.
fn class_names(dir: &Path, variant: Variant) -> Vec<String> {
    let (file, count) = variant.class_file();
    let names: Vec<String> = crate::io::read_text(&dir.join(file))
        .unwrap_or_default()
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(String::from)
        .collect();
    if names.len() == count {
        names
    } else {
        (0..count).map(|i| format!("class {i}")).collect()
    }
}

/// The folder that holds the batches: `dir` itself, or the folder the archive unpacks to.
pub fn locate(dir: &Path) -> Option<(PathBuf, Variant)> {
    [
        dir.to_path_buf(),
        dir.join("cifar-10-batches-bin"),
        dir.join("cifar-100-binary"),
    ]
    .into_iter()
    .find_map(|d| detect(&d).map(|v| (d, v)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(variant: Variant, label: u8, seed: u8) -> Vec<u8> {
        let mut r = vec![label; variant.label_bytes()];
        r.extend((0..3 * PIXELS).map(|i| (i as u8).wrapping_mul(seed)));
        r
    }

    #[test]
    fn planes_become_rgb_pixels_and_fine_labels_are_used() {
        let dir = std::env::temp_dir().join(format!("vgg-cifar-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let mut bytes = record(Variant::Cifar100, 7, 3);
        bytes[0] = 2; // coarse label, ignored
        std::fs::write(dir.join("train.bin"), &bytes).unwrap();
        std::fs::write(dir.join("test.bin"), &bytes).unwrap();
        let split = read(&dir, detect(&dir).unwrap(), true).unwrap();
        assert_eq!(split.labels, [7]);
        assert_eq!(split.classes.len(), 100);
        let pixel = split.images[0].get_pixel(1, 0).0;
        let plane = |c: usize| ((c * PIXELS + 1) as u8).wrapping_mul(3);
        assert_eq!(pixel, [plane(0), plane(1), plane(2)]);

        std::fs::write(dir.join("test.bin"), &bytes[..100]).unwrap();
        let err = read(&dir, Variant::Cifar100, false)
            .err()
            .unwrap()
            .to_string();
        assert!(
            err.contains("not a whole number of 3074-byte records"),
            "{err}"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn labels_beyond_the_class_count_are_rejected() {
        let bytes = record(Variant::Cifar10, 12, 1);
        let (mut images, mut labels) = (Vec::new(), Vec::new());
        let err = parse_records(
            Path::new("x.bin"),
            &bytes,
            Variant::Cifar10,
            10,
            &mut images,
            &mut labels,
        );
        assert!(err.unwrap_err().to_string().contains("label 12"));
    }
}
