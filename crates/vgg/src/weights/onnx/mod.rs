//! ONNX in and out. In: any VGG-shaped graph (torchvision's as `torch.onnx.export` writes
//! it, the ONNX Model Zoo's, Keras models through tf2onnx) becomes our config and
//! state_dict, so a `.onnx` file is a checkpoint like any other. Out: every config at any
//! input size we accept, initializers named by our state_dict keys.

mod decode;
mod export;
mod graph;
mod import;
mod proto;

use std::collections::HashMap;
use std::path::Path;

use candle_core::Tensor;
use prost::Message;

use crate::data::preprocess::Preprocess;
use crate::error::{Error, Result};
use crate::model::VggConfig;
use crate::model::config::cfg_string;
use crate::model::head::HeadItem;
use crate::weights::onnx::decode::OnnxFile;
use crate::weights::recorded::RecordedEntries;

pub use export::{DEFAULT_OPSET, ExportOptions, OPSETS, check_opset, write};
use import::Imported;
pub use import::{GraphInput, Layout};

/// An ONNX model as one of our networks.
pub struct OnnxModel {
    pub config: VggConfig,
    /// The state_dict, under torchvision's keys.
    pub tensors: Vec<(String, Tensor)>,
    pub input: GraphInput,
    /// Who wrote the file (`pytorch 2.15.0`, `tf2onnx 1.16.1`, …) and at which opset.
    pub producer: String,
    pub opset: Option<i64>,
}

impl OnnxModel {
    /// A description for `vgg weights`: the producer, the input as the graph takes it, and
    /// what the network outputs.
    pub fn describe(&self) -> String {
        let layout = match self.input.layout {
            Layout::Nchw => "NCHW",
            Layout::Nhwc => "NHWC (its first Transpose is absorbed: the model runs on NCHW input)",
        };
        let size = self
            .input
            .size
            .map_or("any size".to_string(), |[h, w]| format!("{h}×{w}"));
        let output = match self.config.outputs_probabilities() {
            true => "probabilities (a softmax ends the graph; classify takes them as they are)",
            false => "logits",
        };
        let opset = self.opset.map_or(String::new(), |o| format!(", opset {o}"));
        format!(
            "onnx: written by {}{opset}; input {layout} at {size}; outputs {output}",
            self.producer
        )
    }
}

/// Reads an ONNX file: its graph is matched node by node. Our own exports also record their
/// config, which an inference graph cannot show all of (dropout is left out): when it
/// describes the network the graph computes, its keys are taken (the weights are always
/// the ones the graph's nodes use).
pub fn read(path: &Path) -> Result<OnnxModel> {
    let file = OnnxFile::open(path)?;
    let model = &file.model;
    let metadata: HashMap<String, String> = (model.metadata_props.iter())
        .map(|e| (e.key().to_string(), e.value().to_string()))
        .collect();
    let recorded = RecordedEntries {
        path,
        get: |key: &str| metadata.get(key).cloned(),
    };
    let walked = import::import(&file)?;
    let Imported {
        config,
        tensors,
        input,
    } = match recorded.config()? {
        Some(config) if same_but_dropout(&config, &walked.config) => rekeyed(walked, config)?,
        _ => walked,
    };
    let producer = match model.producer_version() {
        "" => model.producer_name().to_string(),
        version => format!("{} {version}", model.producer_name()),
    };
    let opset = (model.opset_import.iter())
        .find(|o| o.domain().is_empty() || o.domain() == "ai.onnx")
        .and_then(|o| o.version);
    Ok(OnnxModel {
        config,
        tensors,
        input,
        producer,
        opset,
    })
}

/// Whether two configs differ at most in their heads' dropout.
fn same_but_dropout(a: &VggConfig, b: &VggConfig) -> bool {
    let strip = |c: &VggConfig| {
        let head: Vec<HeadItem> = (c.head().iter().copied())
            .filter(|i| !matches!(i, HeadItem::Dropout(_)))
            .collect();
        (
            cfg_string(c.features()),
            c.batch_norm(),
            c.in_channels(),
            c.pool(),
            head,
        )
    };
    strip(a) == strip(b)
}

/// The walked network under the keys of `config`, which differs from it at most in dropout
/// (no tensors): the same tensors in the same order.
fn rekeyed(walked: Imported, config: VggConfig) -> Result<Imported> {
    let values = (walked.tensors.into_iter())
        .filter(|(_, t)| t.dtype().is_float())
        .map(|(_, t)| Ok(t.flatten_all()?.to_vec1::<f32>()?))
        .collect::<Result<Vec<Vec<f32>>>>()?;
    Ok(Imported {
        tensors: import::keyed(&config, values)?,
        config,
        input: walked.input,
    })
}

/// What an ONNX file records beyond its weights, read without decoding the graph's nodes
/// and tensors (prost skips the fields these messages do not name).
#[derive(Clone, PartialEq, Message)]
struct Header {
    #[prost(message, repeated, tag = "14")]
    metadata_props: Vec<proto::StringStringEntryProto>,
    #[prost(message, optional, tag = "7")]
    graph: Option<GraphHeader>,
}

#[derive(Clone, PartialEq, Message)]
struct GraphHeader {
    #[prost(message, repeated, tag = "11")]
    input: Vec<proto::ValueInfoProto>,
}

/// What an ONNX file's header says about its inputs: the preprocessing and class names we
/// recorded when we wrote it, and the square side its graph's input fixes.
struct HeaderFacts {
    preprocess: Option<Preprocess>,
    classes: Option<Vec<String>>,
    side: Option<usize>,
}

/// The preprocessing and class names we recorded in an ONNX file (none in anyone else's).
pub fn recorded(path: &Path) -> Result<(Option<Preprocess>, Option<Vec<String>>)> {
    let facts = header_facts(path)?;
    Ok((facts.preprocess, facts.classes))
}

/// The preprocessing an ONNX file implies: the one we recorded, else ImageNet's
/// normalisation at the input size its graph fixes (torchvision's resize-to-crop ratio of
/// 256/224). Only the recorded one says how the model was trained.
pub fn implied_preprocess(path: &Path) -> Result<Option<Preprocess>> {
    let facts = header_facts(path)?;
    let at_side = |side: usize| {
        let resize = side.checked_mul(256)?.checked_add(112)? / 224;
        Some(Preprocess {
            resize,
            crop: side,
            ..Preprocess::imagenet()
        })
        .filter(|p| p.validate().is_ok())
    };
    Ok(facts.preprocess.or_else(|| at_side(facts.side?)))
}

/// Reads [`HeaderFacts`]. The file is mapped, not read: decoding the header steps over the
/// weights without touching them.
fn header_facts(path: &Path) -> Result<HeaderFacts> {
    let file = crate::io::open_regular(path).map_err(|e| Error::io(path, "cannot read", e))?;
    // SAFETY: the map is read-only and dropped before this function returns, and nothing
    // read from it outlives it (the header's fields are copied). Another process truncating
    // the file meanwhile is outside what any reader can defend against (see safetensors.rs).
    let bytes =
        unsafe { memmap2::Mmap::map(&file) }.map_err(|e| Error::io(path, "cannot read", e))?;
    let Ok(header) = Header::decode(&bytes[..]) else {
        return Ok(HeaderFacts {
            preprocess: None,
            classes: None,
            side: None,
        });
    };
    let recorded = RecordedEntries {
        path,
        get: |key: &str| {
            (header.metadata_props.iter())
                .find(|e| e.key() == key)
                .map(|e| e.value().to_string())
        },
    };
    let side = || {
        let input = header.graph.as_ref()?.input.first()?;
        // NCHW `[N, C, S, S]` or NHWC `[N, S, S, C]`: the square side.
        match *graph::input_dims(input)?.as_slice() {
            [_, _, Some(h), Some(w)] if h == w => Some(h),
            [_, Some(h), Some(w), _] if h == w => Some(h),
            _ => None,
        }
    };
    Ok(HeaderFacts {
        preprocess: recorded.preprocess()?,
        classes: recorded.classes()?,
        side: side(),
    })
}

/// `values` (`rows × cols`, row-major) transposed.
fn transpose(values: &[f32], rows: usize, cols: usize) -> Vec<f32> {
    let mut out = vec![0.0; values.len()];
    for (r, row) in values.chunks(cols).enumerate() {
        for (c, &v) in row.iter().enumerate() {
            out[c * rows + r] = v;
        }
    }
    out
}

#[cfg(test)]
mod tests;
