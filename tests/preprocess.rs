//! Preprocessing parity with torchvision 0.29 + Pillow (fixtures from
//! `scripts/make_fixtures.py images`).

mod common;

use common::fixture;

use vgg::data::image::load_rgb;
use vgg::data::preprocess::Preprocess;

const IMAGES: [&str; 8] = [
    "landscape.jpg",
    "portrait.jpg",
    "small.png",
    "grey.png",
    "rgba.png",
    "odd.webp",
    "wide.bmp",
    "anim.gif",
];

#[test]
fn crops_match_pillow_within_one_level() {
    for name in IMAGES {
        let image = load_rgb(&fixture(&format!("images/{name}"))).unwrap();
        for (preset, resize, crop) in [("default", 256, 224), ("small", 72, 64)] {
            let reference = fixture(&format!("images/{name}.{preset}.crop.png"));
            if !reference.exists() {
                continue;
            }
            let want = image::open(reference).unwrap().into_rgb8();
            let pre = Preprocess {
                resize,
                crop,
                ..Preprocess::imagenet()
            };
            let got = pre.resize_and_crop(&image).unwrap();
            assert_eq!(got.dimensions(), want.dimensions(), "{name} {preset}");
            let diffs: Vec<i32> = got
                .as_raw()
                .iter()
                .zip(want.as_raw())
                .map(|(&a, &b)| (a as i32 - b as i32).abs())
                .collect();
            let max = diffs.iter().max().copied().unwrap();
            let mean = diffs.iter().sum::<i32>() as f64 / diffs.len() as f64 / 255.0;
            println!("{name} {preset}: max {max} levels, mean {mean:.5}");
            assert_eq!(
                max, 0,
                "{name} {preset}: Pillow and we decode and resize identically"
            );
            assert!(mean < 0.001, "{name} {preset}: mean abs diff {mean}");
        }
    }
}

/// The float tensor of torchvision's `ImageClassification(crop_size=224)` itself.
#[test]
fn normalised_tensor_matches_torchvision() {
    let want = candle_core::Tensor::read_npy(fixture("images/imagenet_batch.npy")).unwrap();
    let want: Vec<f32> = want.flatten_all().unwrap().to_vec1().unwrap();
    let got = Preprocess::imagenet()
        .apply(&load_rgb(&fixture("images/rgba.png")).unwrap())
        .unwrap();
    assert_eq!(got.len(), want.len());
    let worst = got
        .iter()
        .zip(&want)
        .map(|(a, b)| (a - b).abs())
        .fold(0f32, f32::max);
    assert!(worst < 1e-6, "max diff {worst}");
}

#[test]
fn broken_images_are_named_with_a_reason() {
    for (name, reason) in [
        ("broken/truncated.jpg", "truncated JPEG"),
        ("broken/notes.png", "Invalid PNG signature"),
        ("broken/tiny.png", "1×1 pixels is too small"),
        ("missing.png", "cannot open"),
    ] {
        let err = load_rgb(&fixture(&format!("images/{name}")))
            .unwrap_err()
            .to_string();
        assert!(err.contains(name) && err.contains(reason), "{name}: {err}");
    }
}

/// Off by default (torchvision ignores EXIF); `--exif-orientation` turns the photo upright.
#[test]
fn exif_orientation_is_opt_in() {
    let path = fixture("images/exif_rotated.jpg");
    let stored = load_rgb(&path).unwrap();
    assert_eq!(stored.dimensions(), (200, 120));
    let upright = Preprocess {
        exif_orientation: true,
        ..Preprocess::imagenet()
    }
    .load(&path)
    .unwrap();
    assert_eq!(upright.dimensions(), (120, 200));
    assert_eq!(upright, image::imageops::rotate90(&stored));
    assert_eq!(Preprocess::imagenet().load(&path).unwrap(), stored);
}

/// CMYK JPEGs decode as Pillow's `convert("RGB")` does (samples stored inverted, Adobe's
/// convention), exactly.
#[test]
fn cmyk_jpeg_decodes_like_pillow() {
    let got = load_rgb(&fixture("images/cmyk.jpg")).unwrap();
    let want = image::open(fixture("images/cmyk.jpg.rgb.png"))
        .unwrap()
        .into_rgb8();
    assert_eq!(got.dimensions(), want.dimensions());
    assert_eq!(got.as_raw(), want.as_raw());
}
