//! Hostile and broken ONNX files: each is a one-line error, with nothing allocated from a
//! claimed size and nothing read outside the model's folder.

use std::path::{Path, PathBuf};

use candle_core::Device;
use prost::Message;

use super::proto::tensor_proto::DataLocation;
use super::proto::{ModelProto, StringStringEntryProto, TensorProto};
use super::{ExportOptions, read, write};
use crate::model::init::Init;
use crate::model::{Vgg, VggConfig};

/// A scratch folder removed when dropped.
struct Folder(PathBuf);

impl Folder {
    fn new(name: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("vgg-onnx-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        Folder(dir)
    }
}

impl Drop for Folder {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A small exported network, decoded.
fn exported(dir: &Path) -> ModelProto {
    let config = VggConfig::custom("4,M,8,M", false)
        .unwrap()
        .with_overrides(&crate::ConfigOverrides {
            hidden: Some(8),
            num_classes: Some(3),
            pool: Some(1),
            ..Default::default()
        })
        .unwrap();
    let model = Vgg::with_init(config, Init::Pytorch, 1, &Device::Cpu).unwrap();
    let path = dir.join("small.onnx");
    let options = ExportOptions {
        input: [1, 3, 16, 16],
        dynamic_batch: false,
        opset: 17,
        recorded: Default::default(),
    };
    write(&path, &model, &options).unwrap();
    ModelProto::decode(std::fs::read(&path).unwrap().as_slice()).unwrap()
}

fn save(dir: &Path, name: &str, model: &ModelProto) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, model.encode_to_vec()).unwrap();
    path
}

fn error_of(path: &Path) -> String {
    match read(path) {
        Ok(_) => panic!("{} was read", path.display()),
        Err(e) => {
            let text = e.to_string();
            assert_eq!(text.lines().count(), 1, "{text}");
            text
        }
    }
}

/// The first convolution's weight, to be broken.
fn conv_weight(model: &mut ModelProto) -> &mut TensorProto {
    let graph = model.graph.as_mut().unwrap();
    (graph.initializer.iter_mut())
        .find(|t| t.name() == "features.0.weight")
        .unwrap()
}

#[test]
fn an_export_reads_back() {
    let dir = Folder::new("ok");
    let model = exported(&dir.0);
    let read_back = read(&save(&dir.0, "m.onnx", &model)).unwrap();
    assert_eq!(read_back.config.num_classes(), 3);
}

#[test]
fn truncated_and_garbage_files_are_errors() {
    let dir = Folder::new("truncated");
    let bytes = exported(&dir.0).encode_to_vec();
    for cut in [1, 7, bytes.len() / 3, bytes.len() - 1] {
        let path = dir.0.join("cut.onnx");
        std::fs::write(&path, &bytes[..cut]).unwrap();
        let err = error_of(&path);
        assert!(err.contains("cut.onnx"), "{err}");
    }
    let path = dir.0.join("garbage.onnx");
    std::fs::write(
        &path,
        [0x08, 0xff, 0xff, 0xff, 0x3a, 0xff, 0xff, 0xff, 0xff, 0x0f],
    )
    .unwrap();
    assert!(error_of(&path).contains("not an ONNX model"));
}

#[test]
fn claimed_sizes_must_match_the_data() {
    let dir = Folder::new("sizes");
    let mut model = exported(&dir.0);
    conv_weight(&mut model).dims = vec![1 << 40, 1 << 40, 3, 3];
    let err = error_of(&save(&dir.0, "huge.onnx", &model));
    assert!(err.contains("claims dimensions"), "{err}");

    let mut model = exported(&dir.0);
    conv_weight(&mut model).dims = vec![i64::MAX, i64::MAX, 3, 3];
    let err = error_of(&save(&dir.0, "overflow.onnx", &model));
    assert!(err.contains("more elements than can be counted"), "{err}");

    let mut model = exported(&dir.0);
    conv_weight(&mut model).dims = vec![4, -3, 3, 3];
    let err = error_of(&save(&dir.0, "negative.onnx", &model));
    assert!(err.contains("negative dimension"), "{err}");

    let mut model = exported(&dir.0);
    conv_weight(&mut model)
        .raw_data
        .as_mut()
        .unwrap()
        .truncate(10);
    let err = error_of(&save(&dir.0, "short.onnx", &model));
    assert!(err.contains("holds 10 bytes of data"), "{err}");
}

/// Moves the first convolution's weight to `location`, `bytes` of it at `offset`.
fn external(model: &mut ModelProto, location: &str, offset: u64, length: u64) {
    let weight = conv_weight(model);
    weight.raw_data = None;
    weight.data_location = Some(DataLocation::External as i32);
    let entry = |key: &str, value: String| StringStringEntryProto {
        key: Some(key.into()),
        value: Some(value),
    };
    weight.external_data = vec![
        entry("location", location.into()),
        entry("offset", offset.to_string()),
        entry("length", length.to_string()),
    ];
}

#[test]
fn external_data_is_read_only_inside_the_model_folder() {
    let outside = Folder::new("outside");
    let secret = outside.0.join("secret.bin");
    std::fs::write(&secret, vec![0u8; 4 * 4 * 3 * 9]).unwrap();
    let dir = Folder::new("external");
    let original = exported(&dir.0);
    let bytes = (conv_weight(&mut original.clone()).raw_data.clone()).unwrap();
    let length = bytes.len() as u64;

    // Inside the folder, within the file: read.
    std::fs::write(
        dir.0.join("weights.bin"),
        [vec![7u8; 16], bytes.clone()].concat(),
    )
    .unwrap();
    let mut model = original.clone();
    external(&mut model, "weights.bin", 16, length);
    read(&save(&dir.0, "inside.onnx", &model)).unwrap();

    // Paths that leave the folder, or do not fit the file: refused.
    let relative_out = format!(
        "../{}/secret.bin",
        outside.0.file_name().unwrap().to_str().unwrap()
    );
    let absolute = secret.display().to_string();
    for (location, offset, why) in [
        (
            relative_out.as_str(),
            0,
            "not a plain path inside the model's folder",
        ),
        (
            absolute.as_str(),
            0,
            "not a plain path inside the model's folder",
        ),
        ("weights.bin", 32, "does not hold its"),
        ("missing.bin", 0, "cannot read"),
    ] {
        let mut model = original.clone();
        external(&mut model, location, offset, length);
        let err = error_of(&save(&dir.0, "bad.onnx", &model));
        assert!(err.contains(why), "{location}: {err}");
    }
    #[cfg(unix)]
    {
        std::os::unix::fs::symlink(&secret, dir.0.join("link.bin")).unwrap();
        let mut model = original.clone();
        external(&mut model, "link.bin", 0, length);
        let err = error_of(&save(&dir.0, "link.onnx", &model));
        assert!(err.contains("leads outside the model's folder"), "{err}");
    }
}

#[test]
fn deeply_nested_graphs_are_refused_without_overflowing_the_stack() {
    use super::proto::{AttributeProto, GraphProto, NodeProto};
    let mut graph = GraphProto::default();
    for _ in 0..300 {
        let node = NodeProto {
            op_type: Some("If".into()),
            attribute: vec![AttributeProto {
                name: Some("then_branch".into()),
                g: Some(graph),
                ..Default::default()
            }],
            ..Default::default()
        };
        graph = GraphProto {
            node: vec![node],
            ..Default::default()
        };
    }
    let model = ModelProto {
        ir_version: Some(8),
        graph: Some(graph),
        ..Default::default()
    };
    let dir = Folder::new("nested");
    let err = error_of(&save(&dir.0, "nested.onnx", &model));
    assert!(err.contains("not an ONNX model"), "{err}");
}

#[test]
fn a_cycle_in_the_graph_is_an_error_not_a_hang() {
    let dir = Folder::new("cycle");
    let mut model = exported(&dir.0);
    model.metadata_props.clear();
    let graph = model.graph.as_mut().unwrap();
    // The first ReLU writes the tensor the first convolution reads.
    let relu = graph
        .node
        .iter_mut()
        .find(|n| n.op_type() == "Relu")
        .unwrap();
    relu.output = vec!["input".into()];
    let err = error_of(&save(&dir.0, "cycle.onnx", &model));
    assert!(
        err.contains("cycle") || err.contains("not a VGG-shaped graph"),
        "{err}"
    );
}

#[test]
fn zero_sized_weights_are_refused_before_any_arithmetic_on_them() {
    let dir = Folder::new("zero");
    let mut model = exported(&dir.0);
    model.metadata_props.clear();
    let weight = conv_weight(&mut model);
    weight.dims = vec![0, 3, 3, 3];
    weight.raw_data = Some(Vec::new());
    let err = error_of(&save(&dir.0, "zero.onnx", &model));
    assert!(err.contains("which holds no values"), "{err}");
}
