//! ONNX import against `scripts/make_onnx_fixtures.py`: graphs exported by
//! `torch.onnx.export` (both exporters, opsets 11–18), Model-Zoo-style and Keras/tf2onnx-style
//! graphs import as the network they compute, and match ONNX Runtime's outputs on both
//! engines; graphs that are not VGG-shaped name their first misfit. Export round trips.

mod common;

use candle_core::{Device, Tensor};
use common::{Scratch, assert_close, fixture, vgg};
use serde_json::Value;
use vgg::data::npy;
use vgg::engine::PlanOptions;
use vgg::model::head::{HeadItem, head_string, parse_head};
use vgg::weights::{self, WeightFormat, onnx};
use vgg::{Mode, ModelSource};

/// Runs `vgg args`, which must succeed; its standard output.
fn succeed(args: &[&str]) -> String {
    let out = vgg(args);
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn manifest() -> Vec<Value> {
    let text = std::fs::read_to_string(fixture("onnx/manifest.json")).unwrap();
    serde_json::from_str(&text).unwrap()
}

fn cases(valid: bool) -> Vec<Value> {
    (manifest().into_iter())
        .filter(|c| (c["style"] != "invalid") == valid)
        .collect()
}

fn path(case: &Value, suffix: &str) -> std::path::PathBuf {
    fixture(&format!("onnx/{}{suffix}", case["name"].as_str().unwrap()))
}

/// The fixture's input as NCHW (Keras graphs take NHWC; our models run on NCHW).
fn nchw_input(case: &Value) -> Tensor {
    let x = npy::read_f32(&path(case, ".input.npy")).unwrap();
    match case["input_layout"].as_str() {
        Some("NHWC") => x.permute((0, 3, 1, 2)).unwrap().contiguous().unwrap(),
        _ => x,
    }
}

/// A head without its dropout (which an inference export may leave out).
fn without_dropout(head: &str) -> String {
    let items = parse_head(head).unwrap();
    head_string(
        &(items.into_iter())
            .filter(|i| !matches!(i, HeadItem::Dropout(_)))
            .collect::<Vec<_>>(),
    )
}

#[test]
fn vgg_shaped_graphs_import_as_the_network_they_compute() {
    for case in cases(true) {
        let name = case["name"].as_str().unwrap();
        let model = onnx::read(&path(&case, ".onnx")).unwrap_or_else(|e| panic!("{name}: {e}"));
        let expected = &case["expected"];
        let config = &model.config;
        let cfg = vgg::model::config::cfg_string(config.features());
        assert_eq!(cfg, expected["cfg"].as_str().unwrap(), "{name}");
        assert_eq!(config.batch_norm(), expected["batch_norm"], "{name}");
        assert_eq!(
            config.pool() as u64,
            expected["pool"].as_u64().unwrap(),
            "{name}"
        );
        let head = head_string(config.head());
        let want = expected["head"].as_str().unwrap();
        if case["dropout_in_graph"] == true {
            assert_eq!(head, want, "{name}");
        } else {
            assert_eq!(without_dropout(&head), without_dropout(want), "{name}");
        }
        let probabilities = config.outputs_probabilities();
        assert_eq!(probabilities, expected["outputs_probabilities"], "{name}");
        let state = weights::StateDict::from_tensors(model.tensors);
        assert_eq!(
            state.num_params() as u64,
            expected["num_params"].as_u64().unwrap(),
            "{name}: parameters"
        );
        let nhwc = case["input_layout"] == "NHWC";
        assert_eq!(model.input.layout == onnx::Layout::Nhwc, nhwc, "{name}");
        // The summary of the imported model counts the same parameters.
        let file = path(&case, ".onnx");
        let shape = case["input_shape"].as_array().unwrap();
        let side = if nhwc { &shape[1..3] } else { &shape[2..4] };
        let input = format!("3x{}x{}", side[0], side[1]);
        let args = [
            "summary",
            "auto",
            "--weights",
            file.to_str().unwrap(),
            "--input",
            &input,
        ];
        let out = succeed(&[&args[..], &["--format", "json"]].concat());
        let summary: Value = serde_json::from_str(&out).unwrap();
        assert_eq!(
            summary["totals"]["params"], expected["num_params"],
            "{name}"
        );
    }
}

#[test]
fn imported_graphs_match_onnx_runtime_on_both_engines() {
    for case in cases(true) {
        let name = case["name"].as_str().unwrap();
        let onnx_path = path(&case, ".onnx");
        let x = nchw_input(&case);
        let want = npy::read_f32(&path(&case, ".output.npy")).unwrap();
        let source = ModelSource::checkpoint(&onnx_path);
        let (model, _) = source.open(&Device::Cpu).unwrap();
        let got = model.forward(&x, Mode::Eval).unwrap();
        assert_close(&got, &want, 1e-4, 1e-4, &format!("{name} (reference)"));
        let [n, _, h, w] = x.dims4().map(|(n, c, h, w)| [n, c, h, w]).unwrap();
        let (mut engine, _) = source.open_fast(n, [h, w], PlanOptions::default()).unwrap();
        let got = engine.forward(&x).unwrap();
        assert_close(&got, &want, 1e-4, 1e-4, &format!("{name} (fast engine)"));
    }
}

#[test]
fn graphs_that_are_not_vgg_shaped_name_the_first_misfit() {
    for case in cases(false) {
        let file = path(&case, ".onnx");
        let err = match onnx::read(&file) {
            Err(e) => e.to_string(),
            Ok(_) => panic!("{} imported", case["name"]),
        };
        let node = &case["first_bad_node"];
        let (op, node_name) = (
            node["op_type"].as_str().unwrap(),
            node["name"].as_str().unwrap(),
        );
        assert!(
            err.contains(&format!("{op} node `{node_name}`")),
            "{}: {err}",
            case["name"]
        );
        assert!(err.contains("not a VGG-shaped graph"), "{err}");
        let out = vgg(&["weights", file.to_str().unwrap()]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{stderr}");
        assert_eq!(stderr.trim_end().lines().count(), 1, "{stderr}");
    }
}

/// Export, then import: the same config, the same tensors, recorded preprocessing and class
/// names; and an ONNX file converts to safetensors that records its head.
#[test]
fn export_round_trips_through_import() {
    let dir = Scratch::new("onnx-round-trip");
    let keras = fixture("onnx/keras_op13_transfer_head.onnx");
    let safetensors = dir.join("keras.safetensors");
    succeed(&[
        "convert",
        keras.to_str().unwrap(),
        safetensors.to_str().unwrap(),
    ]);
    let onnx_out = dir.join("keras.onnx");
    succeed(&[
        "convert",
        safetensors.to_str().unwrap(),
        onnx_out.to_str().unwrap(),
        "--input-shape",
        "2x3x48x40",
        "--dynamic-batch",
    ]);
    assert_eq!(WeightFormat::sniff(&onnx_out).unwrap(), WeightFormat::Onnx);
    let original = onnx::read(&keras).unwrap();
    let back = onnx::read(&onnx_out).unwrap();
    assert_eq!(back.config, original.config);
    assert_eq!(back.input.size, Some([48, 40]));
    for ((key, a), (key_b, b)) in original.tensors.iter().zip(&back.tensors) {
        assert_eq!(key, key_b);
        let diff = (a.to_dtype(candle_core::DType::F32).unwrap()
            - b.to_dtype(candle_core::DType::F32).unwrap())
        .unwrap()
        .abs()
        .unwrap()
        .flatten_all()
        .unwrap()
        .max(0)
        .unwrap()
        .to_scalar::<f32>()
        .unwrap();
        assert_eq!(diff, 0.0, "{key}");
    }
    let (preprocess, classes) = onnx::recorded(&onnx_out).unwrap();
    assert_eq!(preprocess.unwrap().crop, 32, "the Keras graph's input size");
    assert_eq!(classes.unwrap().len(), 4);
}

#[test]
fn weights_and_summary_describe_an_imported_model() {
    let keras = fixture("onnx/keras_op13_transfer_head.onnx");
    let stdout = succeed(&["weights", keras.to_str().unwrap()]);
    assert!(stdout.contains("input NHWC"), "{stdout}");
    assert!(stdout.contains("outputs probabilities"), "{stdout}");
    assert!(stdout.contains("--crop 32"), "{stdout}");
    assert!(
        stdout.contains("head 64,relu,bn,32,relu,bn,4,softmax"),
        "{stdout}"
    );
    let stdout = succeed(&[
        "summary",
        "auto",
        "--weights",
        keras.to_str().unwrap(),
        "--input",
        "3x32x32",
    ]);
    assert!(stdout.contains("BatchNorm1d"), "{stdout}");
    assert!(stdout.contains("Softmax"), "{stdout}");
}

/// A conversion records only what commands would use with its source: a round trip through
/// our ONNX export of a file that records no preprocessing records none (a default would
/// read as how the model was trained and move the paper's test scales); a foreign graph's
/// fixed input size is carried; a `.pth` output says what it cannot hold.
#[test]
fn conversions_record_only_what_the_source_implies() {
    let dir = Scratch::new("onnx-recorded");
    let tiny = fixture("forward/tiny.safetensors");
    let (exported, back) = (dir.join("t.onnx"), dir.join("t.safetensors"));
    succeed(&[
        "convert",
        tiny.to_str().unwrap(),
        exported.to_str().unwrap(),
    ]);
    succeed(&[
        "convert",
        exported.to_str().unwrap(),
        back.to_str().unwrap(),
    ]);
    for file in [&exported, &back] {
        assert_eq!(
            weights::recorded_preprocess(file).unwrap(),
            None,
            "{file:?}"
        );
    }
    let keras = fixture("onnx/keras_op13_vgg_top.onnx");
    let carried = dir.join("k.safetensors");
    succeed(&[
        "convert",
        keras.to_str().unwrap(),
        carried.to_str().unwrap(),
    ]);
    let preprocess = weights::recorded_preprocess(&carried).unwrap().unwrap();
    assert_eq!((preprocess.resize, preprocess.crop), (37, 32));
    let pth = dir.join("k.pth");
    let said = succeed(&["convert", keras.to_str().unwrap(), pth.to_str().unwrap()]);
    assert!(
        said.contains("note: a .pth holds tensors only; left out: the head `")
            && said.contains("softmax`, the preprocessing (write .safetensors"),
        "{said}"
    );
}
