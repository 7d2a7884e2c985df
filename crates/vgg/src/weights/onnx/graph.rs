//! An ONNX graph seen as the chain a VGG is: from the image input, each tensor's one data
//! consumer in turn. Shape plumbing (`Shape`, and what it feeds into a `Reshape`'s shape) is
//! not on the chain; constants (initializers and `Constant` nodes) are looked up by name.

use std::collections::HashMap;

use crate::error::Result;
use crate::weights::onnx::decode::OnnxFile;
use crate::weights::onnx::proto::attribute_proto::AttributeType;
use crate::weights::onnx::proto::tensor_shape_proto::dimension::Value as Dim;
use crate::weights::onnx::proto::type_proto::Value as TypeValue;
use crate::weights::onnx::proto::{GraphProto, NodeProto, TensorProto, ValueInfoProto};

pub struct Graph<'a> {
    pub file: &'a OnnxFile,
    graph: &'a GraphProto,
    constants: HashMap<&'a str, &'a TensorProto>,
    consumers: HashMap<&'a str, Vec<&'a NodeProto>>,
}

impl<'a> Graph<'a> {
    pub fn new(file: &'a OnnxFile) -> Self {
        let graph = file.model.graph.as_ref().expect("checked on open");
        let mut constants: HashMap<&str, &TensorProto> =
            graph.initializer.iter().map(|t| (t.name(), t)).collect();
        let mut consumers: HashMap<&str, Vec<&NodeProto>> = HashMap::new();
        for node in &graph.node {
            if node.op_type() == "Constant"
                && let (Some(out), Some(value)) = (node.output.first(), attribute(node, "value"))
                && let Some(tensor) = &value.t
            {
                constants.insert(out, tensor);
            }
            for input in &node.input {
                consumers.entry(input.as_str()).or_default().push(node);
            }
        }
        Graph {
            file,
            graph,
            constants,
            consumers,
        }
    }

    /// The one graph input that is not a constant: the image.
    pub fn image_input(&self) -> Result<&'a ValueInfoProto> {
        let inputs: Vec<&ValueInfoProto> = (self.graph.input.iter())
            .filter(|i| !self.constants.contains_key(i.name()))
            .collect();
        match inputs.as_slice() {
            [input] => Ok(input),
            _ => Err(self.file.error(format!(
                "not a VGG-shaped graph: it has {} inputs besides its weights ({}); a VGG takes \
                 one image batch",
                inputs.len(),
                inputs
                    .iter()
                    .map(|i| i.name())
                    .collect::<Vec<_>>()
                    .join(", ")
            ))),
        }
    }

    /// The graph's single output.
    pub fn output(&self) -> Result<&'a str> {
        match self.graph.output.as_slice() {
            [output] => Ok(output.name()),
            outputs => Err(self.file.error(format!(
                "not a VGG-shaped graph: it has {} outputs; a VGG has one",
                outputs.len()
            ))),
        }
    }

    pub fn node_count(&self) -> usize {
        self.graph.node.len()
    }

    pub fn constant(&self, name: &str) -> Option<&'a TensorProto> {
        self.constants.get(name).copied()
    }

    /// The node that carries `tensor` on along the chain, `None` at the end of the graph.
    /// A `Shape` node reads the tensor only for its size; two other readers are a branch.
    pub fn next(&self, tensor: &str) -> Result<Option<&'a NodeProto>> {
        let readers: Vec<&NodeProto> = self
            .consumers
            .get(tensor)
            .map(|nodes| {
                (nodes.iter().copied())
                    .filter(|n| n.op_type() != "Shape" && !self.is_shape_input(n, tensor))
                    .collect()
            })
            .unwrap_or_default();
        match readers.as_slice() {
            [] => Ok(None),
            [node] => Ok(Some(node)),
            [first, second, ..] => Err(self.file.error(format!(
                "not a VGG-shaped graph: tensor `{tensor}` is read by both {} and {}; a VGG is a \
                 chain of layers",
                describe(first),
                describe(second)
            ))),
        }
    }

    /// Whether `tensor` is `node`'s shape operand (a Reshape's second input).
    fn is_shape_input(&self, node: &NodeProto, tensor: &str) -> bool {
        node.op_type() == "Reshape" && node.input.get(1).map(String::as_str) == Some(tensor)
    }

    /// The f32 values of a constant operand of `node`.
    pub fn floats(&self, node: &NodeProto, name: &str) -> Result<(Vec<usize>, Vec<f32>)> {
        let tensor = self.constant(name).ok_or_else(|| {
            self.file.error(format!(
                "not a VGG-shaped graph: {} takes `{name}`, which is not a constant; expected \
                 weights there",
                describe(node)
            ))
        })?;
        let (dims, values) = self.file.floats(tensor)?;
        if values.is_empty() {
            return Err(self.file.error(format!(
                "not a VGG-shaped graph: {} takes `{name}` of shape {dims:?}, which holds no values",
                describe(node)
            )));
        }
        Ok((dims, values))
    }
}

/// `op_type` node `name` (or its index when unnamed), for messages.
pub fn describe(node: &NodeProto) -> String {
    match node.name() {
        "" => format!("the {} node (output `{}`)", node.op_type(), output(node)),
        name => format!("{} node `{name}`", node.op_type()),
    }
}

/// A node's first output, the chain's next tensor.
pub fn output(node: &NodeProto) -> &str {
    node.output.first().map_or("", String::as_str)
}

pub fn attribute<'n>(
    node: &'n NodeProto,
    name: &str,
) -> Option<&'n crate::weights::onnx::proto::AttributeProto> {
    node.attribute.iter().find(|a| a.name() == name)
}

/// An integer-list attribute (`None` when absent).
pub fn ints(node: &NodeProto, name: &str) -> Option<Vec<i64>> {
    attribute(node, name).map(|a| a.ints.clone())
}

pub fn int(node: &NodeProto, name: &str) -> Option<i64> {
    attribute(node, name).and_then(|a| a.i)
}

pub fn float(node: &NodeProto, name: &str) -> Option<f32> {
    attribute(node, name).and_then(|a| a.f)
}

pub fn string(node: &NodeProto, name: &str) -> Option<String> {
    attribute(node, name)
        .filter(|a| a.r#type() == AttributeType::String || a.s.is_some())
        .map(|a| String::from_utf8_lossy(a.s()).into_owned())
}

/// A tensor input's dimensions: a number, or `None` for a named (dynamic) one.
pub fn input_dims(input: &ValueInfoProto) -> Option<Vec<Option<usize>>> {
    let Some(TypeValue::TensorType(tensor)) = input.r#type.as_ref()?.value.as_ref() else {
        return None;
    };
    let dims = (tensor.shape.as_ref()?.dim.iter())
        .map(|d| match d.value {
            Some(Dim::DimValue(v)) => usize::try_from(v).ok().filter(|&v| v > 0),
            _ => None,
        })
        .collect();
    Some(dims)
}
