//! The layer list and a state_dict as an ONNX graph at one input size: one node per layer,
//! initializers named by our state_dict keys, the config, preprocessing and class names in
//! the model's metadata. The adaptive average pool is exported exactly at any size: as
//! nothing when the map already has the pool's size, an AveragePool when the map divides
//! into equal cells, else as the linear map it is (two MatMuls by constant averaging
//! matrices) — where `torch.onnx.export` fails.

use std::collections::HashMap;
use std::path::Path;

use prost::Message;

use crate::data::preprocess::Preprocess;
use crate::error::{Error, Result};
use crate::io::write_atomically;
use candle_core::DType;

use crate::model::layers::{LayerKind, LayerSpec, build_layers, propagate_shapes};
use crate::model::{Vgg, VggConfig};
use crate::ops::tensor_pool::pooling_matrix;
use crate::weights::onnx::proto::attribute_proto::AttributeType;
use crate::weights::onnx::proto::tensor_proto::DataType;
use crate::weights::onnx::proto::tensor_shape_proto::{Dimension, dimension};
use crate::weights::onnx::proto::type_proto::{self, Value as TypeValue};
use crate::weights::onnx::proto::{
    AttributeProto, GraphProto, ModelProto, NodeProto, OperatorSetIdProto, StringStringEntryProto,
    TensorProto, TensorShapeProto, TypeProto, ValueInfoProto,
};
use crate::weights::onnx::transpose;
use crate::weights::recorded::Recorded;

/// Opsets we write: every operator we use exists, with the semantics we rely on, since 7.
pub const OPSETS: std::ops::RangeInclusive<i64> = 7..=21;
pub const DEFAULT_OPSET: i64 = 17;

/// How to export.
#[derive(Debug, Clone)]
pub struct ExportOptions {
    /// `[N, C, H, W]`; N is the batch unless `dynamic_batch`.
    pub input: [usize; 4],
    pub dynamic_batch: bool,
    pub opset: i64,
    /// The preprocessing and class names to record (the config is the model's).
    pub recorded: Recorded,
}

impl ExportOptions {
    /// The graph of `model` for `input` (by default one image at `preprocess`'s crop) with
    /// its `classes` recorded in its metadata, and `preprocess` too when it is `trained`
    /// (recorded by the source: a default is not how the model was trained, and recording
    /// it would change how every command evaluates the file); a fixed batch and the
    /// default opset.
    pub fn for_model(
        model: &Vgg,
        (preprocess, trained): (Preprocess, bool),
        classes: Vec<String>,
        input: Option<[usize; 4]>,
    ) -> Self {
        let crop = preprocess.crop;
        ExportOptions {
            input: input.unwrap_or([1, model.config().in_channels(), crop, crop]),
            dynamic_batch: false,
            opset: DEFAULT_OPSET,
            recorded: Recorded {
                config: None,
                preprocess: trained.then_some(preprocess),
                classes: Some(classes),
                int8: None,
            },
        }
    }
}

/// Writes `model` to `path` as an ONNX graph.
pub fn write(path: &Path, model: &Vgg, options: &ExportOptions) -> Result<()> {
    check_opset(options.opset)?;
    let tensors = (model.state_dict()?.into_iter())
        .filter(|(_, t)| t.dtype().is_float())
        .map(|(key, t)| {
            Ok((
                key,
                t.flatten_all()?.to_dtype(DType::F32)?.to_vec1::<f32>()?,
            ))
        })
        .collect::<Result<HashMap<String, Vec<f32>>>>()?;
    let config = model.config();
    let proto = model_proto(config, &tensors, options)?;
    write_atomically(path, |tmp| {
        std::fs::write(tmp, proto.encode_to_vec()).map_err(|e| Error::io(tmp, "cannot write", e))
    })
}

/// Refuses an opset we do not write.
pub fn check_opset(opset: i64) -> Result<()> {
    if !OPSETS.contains(&opset) {
        return Err(Error::BadArgument(format!(
            "--opset {opset}: we export opsets {} to {}",
            OPSETS.start(),
            OPSETS.end()
        )));
    }
    Ok(())
}

fn model_proto(
    config: &VggConfig,
    tensors: &HashMap<String, Vec<f32>>,
    options: &ExportOptions,
) -> Result<ModelProto> {
    let [n, c, h, w] = options.input;
    if n == 0 {
        return Err(Error::BadArgument(format!(
            "an ONNX graph for a batch of 0 images (input {:?}) computes nothing; give a batch \
             of at least 1 (or a dynamic batch)",
            options.input
        )));
    }
    let layers = build_layers(config);
    let shapes = propagate_shapes(config, &layers, [c, h, w])?;
    let mut graph = GraphBuilder::default();
    let mut current = "input".to_string();
    for (layer, shape) in layers.iter().zip(&shapes) {
        current = graph.layer(layer, &shape.input, current, tensors)?;
    }
    let batch = |name: &str| match options.dynamic_batch {
        true => dim_param(name),
        false => dim_value(n),
    };
    let mut inputs = vec![value_info(
        "input",
        vec![batch("batch"), dim_value(c), dim_value(h), dim_value(w)],
    )];
    // Before IR version 4 every initializer is also a graph input.
    if ir_version(options.opset) < 4 {
        inputs.extend(graph.initializers.iter().map(|t| {
            let dims = t.dims.iter().map(|&d| dim_value(d as usize)).collect();
            value_info(t.name(), dims)
        }));
    }
    let output = value_info(
        &current,
        vec![batch("batch"), dim_value(config.num_classes())],
    );
    let metadata = Recorded {
        config: Some(config.clone()),
        ..options.recorded.clone()
    }
    .to_metadata();
    Ok(ModelProto {
        ir_version: Some(ir_version(options.opset)),
        opset_import: vec![OperatorSetIdProto {
            domain: Some(String::new()),
            version: Some(options.opset),
        }],
        producer_name: Some("vgg".into()),
        producer_version: Some(env!("CARGO_PKG_VERSION").into()),
        graph: Some(GraphProto {
            node: graph.nodes,
            name: Some(config.name().to_string()),
            initializer: graph.initializers,
            input: inputs,
            output: vec![output],
            ..GraphProto::default()
        }),
        metadata_props: metadata
            .into_iter()
            .map(|(key, value)| StringStringEntryProto {
                key: Some(key),
                value: Some(value),
            })
            .collect(),
        ..ModelProto::default()
    })
}

#[derive(Default)]
struct GraphBuilder {
    nodes: Vec<NodeProto>,
    initializers: Vec<TensorProto>,
}

impl GraphBuilder {
    /// Adds the `op` node `name` reading `inputs`; its output is called `name` too.
    fn node(
        &mut self,
        op: &str,
        name: &str,
        inputs: Vec<String>,
        attribute: Vec<AttributeProto>,
    ) -> String {
        self.nodes.push(NodeProto {
            input: inputs,
            output: vec![name.to_string()],
            name: Some(name.to_string()),
            op_type: Some(op.to_string()),
            attribute,
            ..NodeProto::default()
        });
        name.to_string()
    }

    /// The node(s) of `layer`, reading `current` (of shape `input`, CHW); returns the
    /// tensor that carries on.
    fn layer(
        &mut self,
        layer: &LayerSpec,
        input: &[usize],
        mut current: String,
        tensors: &HashMap<String, Vec<f32>>,
    ) -> Result<String> {
        let path = layer.path();
        let mut weight = |name: &str| self.initializer(&format!("{path}.{name}"), tensors, layer);
        let node = match layer.kind {
            LayerKind::Conv2d { .. } => {
                let inputs = vec![current.clone(), weight("weight")?, weight("bias")?];
                let attrs = vec![
                    ints("kernel_shape", &[3, 3]),
                    ints("pads", &[1, 1, 1, 1]),
                    ints("strides", &[1, 1]),
                ];
                Some(("Conv", inputs, attrs))
            }
            LayerKind::BatchNorm2d { eps, .. } | LayerKind::BatchNorm1d { eps, .. } => {
                let mut inputs = vec![current.clone()];
                for name in ["weight", "bias", "running_mean", "running_var"] {
                    inputs.push(weight(name)?);
                }
                Some((
                    "BatchNormalization",
                    inputs,
                    vec![float("epsilon", eps as f32)],
                ))
            }
            LayerKind::ReLU => Some(("Relu", vec![current.clone()], vec![])),
            LayerKind::MaxPool2d => {
                let attrs = vec![ints("kernel_shape", &[2, 2]), ints("strides", &[2, 2])];
                Some(("MaxPool", vec![current.clone()], attrs))
            }
            LayerKind::AdaptiveAvgPool2d { output } => {
                let [_, mh, mw] = input[..] else {
                    unreachable!("the pool sees a CHW map")
                };
                current = self.adaptive_pool(&current, mh, mw, output);
                None
            }
            LayerKind::Flatten => Some(("Flatten", vec![current.clone()], vec![int("axis", 1)])),
            LayerKind::Linear { .. } => {
                let inputs = vec![current.clone(), weight("weight")?, weight("bias")?];
                Some(("Gemm", inputs, vec![int("transB", 1)]))
            }
            LayerKind::Softmax => Some(("Softmax", vec![current.clone()], vec![int("axis", 1)])),
            // The identity at inference.
            LayerKind::Dropout { .. } => None,
            LayerKind::FcConv { .. } => unreachable!("the standard form has no dense layers"),
        };
        Ok(match node {
            Some((op, inputs, attrs)) => self.node(op, &path, inputs, attrs),
            None => current,
        })
    }

    /// The state_dict tensor `key` as an initializer of `layer`'s shape.
    fn initializer(
        &mut self,
        key: &str,
        tensors: &HashMap<String, Vec<f32>>,
        layer: &LayerSpec,
    ) -> Result<String> {
        let values = tensors
            .get(key)
            .ok_or_else(|| Error::BadConfig(format!("no tensor `{key}` to export")))?;
        let spec = (layer.named_tensors().into_iter())
            .find(|(k, _)| k == key)
            .map(|(_, spec)| spec)
            .expect("keys come from the layer");
        self.constant(key, &spec.shape, values)
    }

    fn constant(&mut self, name: &str, shape: &[usize], values: &[f32]) -> Result<String> {
        if shape.iter().product::<usize>() != values.len() {
            return Err(Error::BadConfig(format!(
                "`{name}` has {} values for shape {shape:?}",
                values.len()
            )));
        }
        self.initializers.push(TensorProto {
            dims: shape.iter().map(|&d| d as i64).collect(),
            data_type: Some(DataType::Float as i32),
            name: Some(name.to_string()),
            raw_data: Some(values.iter().flat_map(|v| v.to_le_bytes()).collect()),
            ..TensorProto::default()
        });
        Ok(name.to_string())
    }

    /// `AdaptiveAvgPool2d(output)` on an `h×w` map, exactly.
    fn adaptive_pool(&mut self, input: &str, h: usize, w: usize, output: usize) -> String {
        if h == output && w == output {
            return input.to_string();
        }
        if h.is_multiple_of(output) && w.is_multiple_of(output) {
            let kernel = [(h / output) as i64, (w / output) as i64];
            let attrs = vec![ints("kernel_shape", &kernel), ints("strides", &kernel)];
            return self.node("AveragePool", "avgpool", vec![input.into()], attrs);
        }
        // Y = A_h · X · A_wᵀ, A's rows averaging each output cell's input range.
        let cols = transpose(&pooling_matrix(w, output), output, w);
        let cols =
            (self.constant("avgpool.cols", &[w, output], &cols)).expect("the matrix has its shape");
        let rows = (self.constant("avgpool.rows", &[output, h], &pooling_matrix(h, output)))
            .expect("the matrix has its shape");
        let across = self.node("MatMul", "avgpool.across", vec![input.into(), cols], vec![]);
        self.node("MatMul", "avgpool", vec![rows, across], vec![])
    }
}

/// The IR version that goes with an opset (the ONNX versioning table).
fn ir_version(opset: i64) -> i64 {
    match opset {
        ..=8 => 3,
        9 => 4,
        10 => 5,
        11 => 6,
        12..=14 => 7,
        15..=18 => 8,
        19..=20 => 9,
        _ => 10,
    }
}

fn ints(name: &str, values: &[i64]) -> AttributeProto {
    AttributeProto {
        name: Some(name.into()),
        r#type: Some(AttributeType::Ints as i32),
        ints: values.to_vec(),
        ..AttributeProto::default()
    }
}

fn int(name: &str, value: i64) -> AttributeProto {
    AttributeProto {
        name: Some(name.into()),
        r#type: Some(AttributeType::Int as i32),
        i: Some(value),
        ..AttributeProto::default()
    }
}

fn float(name: &str, value: f32) -> AttributeProto {
    AttributeProto {
        name: Some(name.into()),
        r#type: Some(AttributeType::Float as i32),
        f: Some(value),
        ..AttributeProto::default()
    }
}

fn dim_value(value: usize) -> Dimension {
    Dimension {
        value: Some(dimension::Value::DimValue(value as i64)),
        ..Dimension::default()
    }
}

fn dim_param(name: &str) -> Dimension {
    Dimension {
        value: Some(dimension::Value::DimParam(name.into())),
        ..Dimension::default()
    }
}

fn value_info(name: &str, dims: Vec<Dimension>) -> ValueInfoProto {
    ValueInfoProto {
        name: Some(name.into()),
        r#type: Some(TypeProto {
            value: Some(TypeValue::TensorType(type_proto::Tensor {
                elem_type: Some(DataType::Float as i32),
                shape: Some(TensorShapeProto { dim: dims }),
            })),
            ..TypeProto::default()
        }),
        ..ValueInfoProto::default()
    }
}
