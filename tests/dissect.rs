//! `vgg dissect` and Grad-CAM: the map matches PyTorch's (fixtures from
//! `scripts/make_fixtures.py gradcam`), and the report is one self-contained page.

mod common;

use common::{Scratch, fixture, vgg};

use candle_core::{Device, Tensor};
use vgg::data::image::load_rgb;
use vgg::data::preprocess::Preprocess;
use vgg::model::{Mode, Vgg};
use vgg::viz::gradcam::{grad_cam, target_layer};
use vgg::weights;

fn tiny_bn() -> Vgg {
    let state = weights::read(&fixture("forward/tiny_bn.safetensors")).unwrap();
    let config = weights::detect::detect_config(&state.shapes()).unwrap();
    weights::load::load(config, state, true, 0, &Device::Cpu)
        .unwrap()
        .0
}

fn max_abs_diff(got: &[f32], want: &Tensor) -> f32 {
    let want = want.flatten_all().unwrap().to_vec1::<f32>().unwrap();
    assert_eq!(got.len(), want.len());
    got.iter()
        .zip(&want)
        .map(|(g, w)| (g - w).abs())
        .fold(0.0, f32::max)
}

#[test]
fn grad_cam_matches_pytorch() {
    let meta: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(fixture("gradcam/gradcam.json")).unwrap())
            .unwrap();
    let model = tiny_bn();
    let target = target_layer(&model).unwrap();
    assert_eq!(
        model.layers()[target].path(),
        meta["layer"].as_str().unwrap()
    );
    let preprocess = Preprocess::imagenet();
    for case in meta["cases"].as_array().unwrap() {
        let image = load_rgb(&fixture(case["image"].as_str().unwrap())).unwrap();
        let x = Tensor::from_vec(
            preprocess.apply(&image).unwrap(),
            (1, 3, 224, 224),
            &Device::Cpu,
        )
        .unwrap();
        let layer = model.layers()[target].path();
        let activation = model.forward_to(&x, Mode::Eval, Some(&layer)).unwrap();
        let cam = grad_cam(&model, &activation, None).unwrap();
        assert_eq!(cam.class as u64, case["class"].as_u64().unwrap(), "{case}");

        let want = Tensor::read_npy(fixture(case["cam"].as_str().unwrap())).unwrap();
        assert_eq!(want.dims(), [cam.height, cam.width]);
        let map_diff = max_abs_diff(&cam.map, &want);
        let want = Tensor::read_npy(fixture(case["upsampled"].as_str().unwrap())).unwrap();
        let upsampled_diff = max_abs_diff(&cam.upsample(224, 224), &want);
        println!(
            "{}: max |diff| map {map_diff:e}, upsampled {upsampled_diff:e}",
            case["image"]
        );
        assert!(map_diff < 1e-3, "{case}: map differs by {map_diff}");
        assert!(
            upsampled_diff < 1e-3,
            "{case}: upsampled map differs by {upsampled_diff}"
        );
    }
}

#[test]
fn dissect_writes_a_self_contained_report() {
    let scratch = Scratch::new("dissect");
    let out = scratch.join("report");
    let (weights, image) = (
        fixture("forward/tiny_bn.safetensors"),
        fixture("images/landscape.jpg"),
    );
    let output = vgg(&[
        "dissect",
        "--weights",
        weights.to_str().unwrap(),
        image.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let page = std::fs::read_to_string(out.join("index.html")).unwrap();
    for stage in 1..=5 {
        assert!(page.contains(&format!(
            "<figure id=\"stage{stage}\"><img src=\"data:image/png;base64,"
        )));
    }
    assert!(!page.contains("id=\"stage6\""));
    for id in ["input", "gradcam", "filters"] {
        assert!(
            page.contains(&format!(
                "<figure id=\"{id}\"><img src=\"data:image/png;base64,"
            )),
            "{id}"
        );
    }
    assert_eq!(page.matches("<tr class=\"class\">").count(), 5);
    assert!(page.contains("<pre id=\"summary\">"));
    assert!(page.contains("Total params: "));
    assert_eq!(
        page.matches("src=").count(),
        page.matches("src=\"data:").count()
    );
    assert_eq!(page.matches("src=").count(), 8);
    for external in ["href=", "url(", "http://", "https://", "@import"] {
        assert!(
            !page.contains(external),
            "the page refers to something outside: {external}"
        );
    }
    for file in [
        "input", "filters", "gradcam", "stage1", "stage2", "stage3", "stage4", "stage5",
    ] {
        let png = image::open(out.join(format!("{file}.png"))).unwrap();
        assert!(png.width() > 0, "{file}");
    }
    let input = image::open(out.join("input.png")).unwrap();
    assert_eq!((input.width(), input.height()), (224, 224));
}
