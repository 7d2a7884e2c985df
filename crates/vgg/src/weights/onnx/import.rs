//! A VGG-shaped ONNX graph into our config and state_dict. The graph is walked from the image
//! input along its one chain, each node matched to what a VGG has at that point: convolutions
//! (with batch norm) and ReLUs, max-pools, an optional average pool, a flatten (NHWC or NCHW),
//! then the head's dense layers (Gemm, or MatMul + Add), ReLUs, dropout, batch norm
//! (BatchNormalization, or Mul + Add by constants) and a final softmax. The first node that
//! does not fit is named in the error; nothing is imported partially.

use candle_core::{Device, Tensor};

use crate::error::Result;
use crate::model::config::{CfgItem, ConfigOverrides, VggConfig, pool_side};
use crate::model::head::{DEFAULT_DROPOUT, HeadItem, torchvision_head};
use crate::model::layers::{BN_EPS, build_layers};
use crate::ops::tensor_pool::pooling_matrix;
use crate::weights::onnx::decode::OnnxFile;
use crate::weights::onnx::graph::{self, Graph, describe, output};
use crate::weights::onnx::proto::NodeProto;
use crate::weights::onnx::transpose;

/// The layout of the image input the graph was made for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layout {
    Nchw,
    /// TensorFlow/Keras: `[N, H, W, C]`, transposed to NCHW by the graph's first node.
    Nhwc,
}

/// What the graph says about its input and output beyond the weights.
#[derive(Debug, Clone, PartialEq)]
pub struct GraphInput {
    pub layout: Layout,
    /// Height and width, when the graph fixes them: the size the model was made for.
    pub size: Option<[usize; 2]>,
}

/// Batch norm as an eval-mode affine map, with the variance restated for our epsilon.
struct Norm {
    weight: Vec<f32>,
    bias: Vec<f32>,
    mean: Vec<f32>,
    var: Vec<f32>,
}

impl Norm {
    /// `var + eps − BN_EPS` makes `√(var + BN_EPS)` the file's `√(var + eps)`.
    fn new(weight: Vec<f32>, bias: Vec<f32>, mean: Vec<f32>, var: Vec<f32>, eps: f64) -> Self {
        let shift = (eps - BN_EPS) as f32;
        let var = var.into_iter().map(|v| v + shift).collect();
        Norm {
            weight,
            bias,
            mean,
            var,
        }
    }

    /// `x·scale + shift` as a batch norm: mean 0 and `var + BN_EPS = 1`.
    fn affine(scale: Vec<f32>, shift: Vec<f32>) -> Self {
        let n = scale.len();
        Norm::new(scale, shift, vec![0.0; n], vec![1.0; n], 0.0)
    }

    fn tensors(self) -> [Vec<f32>; 4] {
        [self.weight, self.bias, self.mean, self.var]
    }
}

enum Feature {
    Conv {
        in_channels: usize,
        out_channels: usize,
        weight: Vec<f32>,
        bias: Vec<f32>,
        norm: Option<Norm>,
        relu: bool,
    },
    Pool,
}

enum HeadLayer {
    /// `weight` is `[out, in]`, row-major.
    Linear {
        in_features: usize,
        out_features: usize,
        weight: Vec<f32>,
        bias: Vec<f32>,
    },
    Norm(Norm),
    Relu,
    Dropout(f64),
    Softmax,
}

/// Where along a VGG the walk is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stage {
    Start,
    Features,
    /// After an average pool, or the transpose back to NHWC before a flatten.
    Pooled,
    Head,
    /// After the softmax: nothing may follow.
    End,
}

enum Pooling {
    None,
    Global,
    Average {
        kernel: [usize; 2],
    },
    /// PyTorch's adaptive average pool to `output×output` as the two matrix products our
    /// exporter writes where the map does not divide into equal cells.
    Adaptive {
        output: usize,
    },
}

struct Walk<'a> {
    graph: Graph<'a>,
    stage: Stage,
    layout: Layout,
    hwc_flatten: bool,
    /// The row width a Reshape to a constant `[N, F]` makes.
    reshape_width: Option<usize>,
    /// Whether that Reshape leaves the row count free (`[-1, F]`): a flatten per image only
    /// when F is the whole map.
    reshape_any_batch: bool,
    pooling: Pooling,
    features: Vec<Feature>,
    head: Vec<HeadLayer>,
}

/// A graph as one of our networks: its config, its state_dict, and its input.
pub struct Imported {
    pub config: VggConfig,
    pub tensors: Vec<(String, Tensor)>,
    pub input: GraphInput,
}

/// The config and state_dict of the VGG that `file`'s graph computes, and its input.
pub fn import(file: &OnnxFile) -> Result<Imported> {
    let graph = Graph::new(file);
    let input = graph.image_input()?;
    let mut walk = Walk {
        graph,
        stage: Stage::Start,
        layout: Layout::Nchw,
        hwc_flatten: false,
        reshape_width: None,
        reshape_any_batch: false,
        pooling: Pooling::None,
        features: Vec::new(),
        head: Vec::new(),
    };
    let mut tensor = input.name().to_string();
    let mut steps = 0;
    while let Some(node) = walk.graph.next(&tensor)? {
        // Each step moves to a later node; more steps than nodes is a cycle.
        steps += 1;
        if steps > walk.graph.node_count() {
            return Err(file.error(format!(
                "not a valid graph: {} leads back into the chain (a cycle)",
                describe(node)
            )));
        }
        tensor = walk.step(node, &tensor)?;
    }
    let end = walk.graph.output()?;
    if tensor != end {
        return Err(file.error(format!(
            "not a VGG-shaped graph: the chain from the input ends at `{tensor}`, not at the \
             graph's output `{end}`"
        )));
    }
    let dims = graph::input_dims(input).unwrap_or_default();
    let size = match (walk.layout, dims.as_slice()) {
        (Layout::Nchw, &[_, _, Some(h), Some(w)]) | (Layout::Nhwc, &[_, Some(h), Some(w), _]) => {
            Some([h, w])
        }
        _ => None,
    };
    let (config, tensors) = walk.finish(size)?;
    let layout = walk.layout;
    Ok(Imported {
        config,
        tensors,
        input: GraphInput { layout, size },
    })
}

impl<'a> Walk<'a> {
    fn error(&self, node: &NodeProto, what: &str) -> crate::error::Error {
        let expected = match self.stage {
            Stage::Start => "a Conv (or a Transpose from NHWC) to begin",
            Stage::Features => {
                "Conv, BatchNormalization, Relu, MaxPool, an average pool or a flatten"
            }
            Stage::Pooled => "a Flatten or Reshape",
            Stage::Head => {
                "Gemm, MatMul(+Add), Relu, Dropout, BatchNormalization, Mul+Add or Softmax"
            }
            Stage::End => "nothing after the softmax",
        };
        self.graph.file.error(format!(
            "not a VGG-shaped graph: {} {what}; expected {expected} there",
            describe(node)
        ))
    }

    /// Matches `node`, which reads the chain's tensor `tensor`; returns the chain's next tensor.
    fn step(&mut self, node: &'a NodeProto, tensor: &str) -> Result<String> {
        let data_first = node.input.first().map(String::as_str) == Some(tensor);
        let op = node.op_type();
        if !data_first && !matches!(op, "Add" | "Mul") {
            return Err(self.error(node, "reads the chain's tensor as a weight"));
        }
        match (op, self.stage) {
            ("Identity", _) => {}
            ("Cast", _) if graph::int(node, "to") == Some(1) => {}
            ("Transpose", _) => self.transpose(node)?,
            ("Conv", Stage::Start | Stage::Features) => self.conv(node)?,
            ("BatchNormalization", Stage::Features) => self.conv_norm(node)?,
            ("Relu", Stage::Features) => match self.features.last_mut() {
                Some(Feature::Conv { relu, norm: _, .. }) if !*relu => *relu = true,
                _ => return Err(self.error(node, "does not follow a convolution")),
            },
            ("MaxPool", Stage::Features) => self.max_pool(node)?,
            ("AveragePool" | "GlobalAveragePool" | "ReduceMean", Stage::Features) => {
                self.average_pool(node)?
            }
            ("MatMul", Stage::Features) => return self.adaptive_pool(node, tensor),
            ("Flatten" | "Reshape", Stage::Features | Stage::Pooled) => self.flatten(node)?,
            // The Model Zoo flattens before every Gemm: on `[N, F]` that changes nothing.
            ("Flatten", Stage::Head) if graph::int(node, "axis").is_none_or(|a| a == 1) => {}
            ("Gemm", Stage::Head) => self.gemm(node)?,
            ("MatMul", Stage::Head) => return self.matmul(node),
            ("Mul", Stage::Head) => return self.scale_shift(node, tensor),
            ("BatchNormalization", Stage::Head) => {
                let norm = self.norm(node)?;
                self.head.push(HeadLayer::Norm(norm));
            }
            ("Relu", Stage::Head) => self.head.push(HeadLayer::Relu),
            ("Dropout", Stage::Head) => {
                let p = self.dropout_ratio(node)?;
                self.head.push(HeadLayer::Dropout(p));
            }
            ("Softmax", Stage::Head) => {
                let axis = graph::int(node, "axis");
                if !matches!(axis, None | Some(1) | Some(-1)) {
                    return Err(self.error(node, "is not over the classes"));
                }
                self.head.push(HeadLayer::Softmax);
                self.stage = Stage::End;
            }
            _ => return Err(self.error(node, "is not part of a VGG at this point")),
        }
        Ok(output(node).to_string())
    }

    fn transpose(&mut self, node: &NodeProto) -> Result<()> {
        let perm = graph::ints(node, "perm").unwrap_or_default();
        match (self.stage, perm.as_slice()) {
            (Stage::Start, [0, 3, 1, 2]) if self.layout == Layout::Nchw => {
                self.layout = Layout::Nhwc
            }
            (Stage::Features | Stage::Pooled, [0, 2, 3, 1]) if !self.hwc_flatten => {
                self.hwc_flatten = true;
                self.stage = Stage::Pooled;
            }
            _ => return Err(self.error(node, &format!("permutes to {perm:?}"))),
        }
        Ok(())
    }

    fn conv(&mut self, node: &NodeProto) -> Result<()> {
        if let Some(Feature::Conv { relu: false, .. }) = self.features.last() {
            return Err(self.error(node, "follows a convolution without a Relu"));
        }
        let attr = |name| graph::ints(node, name);
        let auto_pad = graph::string(node, "auto_pad").unwrap_or_default();
        let padded = match (attr("pads"), auto_pad.as_str()) {
            (Some(p), "" | "NOTSET") => p == [1, 1, 1, 1],
            (None, "SAME_UPPER" | "SAME_LOWER") => true,
            _ => false,
        };
        let plain = |v: Option<Vec<i64>>, ok: &[i64]| v.is_none_or(|v| v == ok);
        let fits = padded
            && plain(attr("kernel_shape"), &[3, 3])
            && plain(attr("strides"), &[1, 1])
            && plain(attr("dilations"), &[1, 1])
            && graph::int(node, "group").is_none_or(|g| g == 1);
        let (shape, weight) = self.graph.floats(node, input(node, 1))?;
        let &[out_channels, in_channels, 3, 3] = shape.as_slice() else {
            return Err(self.error(node, &format!("has a {shape:?} kernel, not 3×3")));
        };
        if !fits {
            return Err(self.error(node, "is not a 3×3 convolution with stride 1 and padding 1"));
        }
        let before = self.features.iter().rev().find_map(|f| match f {
            Feature::Conv { out_channels, .. } => Some(*out_channels),
            Feature::Pool => None,
        });
        if let Some(channels) = before.filter(|&c| c != in_channels) {
            return Err(self.error(
                node,
                &format!("takes {in_channels} channels where the layer before gives {channels}"),
            ));
        }
        let bias = self.optional_bias(node, 2, out_channels)?;
        self.features.push(Feature::Conv {
            in_channels,
            out_channels,
            weight,
            bias,
            norm: None,
            relu: false,
        });
        self.stage = Stage::Features;
        Ok(())
    }

    /// A bias operand of `len` values, or zeros when the node has none.
    fn optional_bias(&self, node: &NodeProto, index: usize, len: usize) -> Result<Vec<f32>> {
        match node.input.get(index).filter(|name| !name.is_empty()) {
            None => Ok(vec![0.0; len]),
            Some(name) => {
                let (_, values) = self.graph.floats(node, name)?;
                if values.len() != len {
                    return Err(self.error(
                        node,
                        &format!("has {} biases for {len} outputs", values.len()),
                    ));
                }
                Ok(values)
            }
        }
    }

    fn conv_norm(&mut self, node: &NodeProto) -> Result<()> {
        let norm = self.norm(node)?;
        match self.features.last_mut() {
            Some(Feature::Conv {
                norm: slot @ None,
                relu: false,
                out_channels,
                ..
            }) if norm.weight.len() == *out_channels => *slot = Some(norm),
            _ => {
                return Err(self.error(node, "does not directly follow a convolution of its width"));
            }
        }
        Ok(())
    }

    /// A BatchNormalization node's statistics (inference mode).
    fn norm(&self, node: &NodeProto) -> Result<Norm> {
        if graph::int(node, "training_mode").is_some_and(|t| t != 0) {
            return Err(self.error(node, "is in training mode"));
        }
        let eps = graph::float(node, "epsilon").map_or(1e-5, f64::from);
        let operand = |i| self.graph.floats(node, input(node, i)).map(|(_, v)| v);
        let (weight, bias, mean, var) = (operand(1)?, operand(2)?, operand(3)?, operand(4)?);
        let n = weight.len();
        if [&bias, &mean, &var].iter().any(|t| t.len() != n) {
            return Err(self.error(node, "has statistics of different lengths"));
        }
        Ok(Norm::new(weight, bias, mean, var, eps))
    }

    fn max_pool(&mut self, node: &NodeProto) -> Result<()> {
        let attr = |name| graph::ints(node, name);
        let zero_pads = attr("pads").is_none_or(|p| p.iter().all(|&v| v == 0));
        let auto_pad = graph::string(node, "auto_pad").unwrap_or_default();
        let fits = attr("kernel_shape").as_deref() == Some(&[2, 2])
            && attr("strides").as_deref() == Some(&[2, 2])
            && zero_pads
            && matches!(auto_pad.as_str(), "" | "NOTSET" | "VALID")
            && graph::int(node, "ceil_mode").is_none_or(|c| c == 0)
            && attr("dilations").is_none_or(|d| d == [1, 1]);
        if !fits {
            return Err(self.error(node, "is not a 2×2 max-pool with stride 2 and no padding"));
        }
        if let Some(Feature::Conv { relu: false, .. }) = self.features.last() {
            return Err(self.error(node, "follows a convolution without a Relu"));
        }
        self.features.push(Feature::Pool);
        Ok(())
    }

    fn average_pool(&mut self, node: &NodeProto) -> Result<()> {
        self.pooling = match node.op_type() {
            "GlobalAveragePool" => Pooling::Global,
            "ReduceMean" => {
                let axes = graph::ints(node, "axes").unwrap_or_default();
                if axes != [2, 3] || graph::int(node, "keepdims") == Some(0) {
                    return Err(self.error(node, "is not a mean over height and width"));
                }
                Pooling::Global
            }
            _ => {
                let kernel = graph::ints(node, "kernel_shape").unwrap_or_default();
                let strides = graph::ints(node, "strides").unwrap_or_else(|| vec![1, 1]);
                let zero_pads = graph::ints(node, "pads").is_none_or(|p| p.iter().all(|&v| v == 0));
                match kernel.as_slice() {
                    &[h, w] if strides == kernel && zero_pads && h > 0 && w > 0 => {
                        Pooling::Average {
                            kernel: [h as usize, w as usize],
                        }
                    }
                    _ => {
                        return Err(self.error(
                            node,
                            "is not an average pool over whole cells (stride = kernel, no padding)",
                        ));
                    }
                }
            }
        };
        self.stage = Stage::Pooled;
        Ok(())
    }

    /// `A_h · (X · A_wᵀ)`, each `A` PyTorch's adaptive-pool averaging matrix.
    fn adaptive_pool(&mut self, node: &'a NodeProto, tensor: &str) -> Result<String> {
        let misfit = |node| self.error(node, "is not an adaptive average pool");
        let (dims, cols) = self.graph.floats(node, input(node, 1))?;
        let &[w, cells] = dims.as_slice() else {
            return Err(misfit(node));
        };
        let rows_node = match self.graph.next(output(node))? {
            Some(next) if next.op_type() == "MatMul" && input(next, 1) == output(node) => next,
            _ => return Err(misfit(node)),
        };
        let (dims, rows) = self.graph.floats(rows_node, input(rows_node, 0))?;
        let &[rows_out, h] = dims.as_slice() else {
            return Err(misfit(rows_node));
        };
        let near = |a: &[f32], b: &[f32]| a.iter().zip(b).all(|(x, y)| (x - y).abs() <= 1e-6);
        let want_cols = transpose(&pooling_matrix(w, cells), cells, w);
        if rows_out != cells || !near(&cols, &want_cols) || !near(&rows, &pooling_matrix(h, cells))
        {
            return Err(misfit(node));
        }
        debug_assert_eq!(input(node, 0), tensor);
        self.pooling = Pooling::Adaptive { output: cells };
        self.stage = Stage::Pooled;
        Ok(output(rows_node).to_string())
    }

    fn flatten(&mut self, node: &NodeProto) -> Result<()> {
        if node.op_type() == "Flatten" && graph::int(node, "axis").is_some_and(|a| a != 1) {
            return Err(self.error(node, "does not flatten from axis 1"));
        }
        if node.op_type() == "Reshape"
            && let Some(shape) = node.input.get(1).and_then(|s| self.graph.constant(s))
        {
            // `[N or 0, -1]`, or `[N or 0 or -1, F]` with F checked against the first dense
            // layer (and, for -1, against the map at the graph's fixed input size).
            match self.graph.file.ints(shape)?[..] {
                [batch, -1] if batch >= 0 => {}
                [batch, width] if batch >= -1 && width > 0 => {
                    self.reshape_width = Some(width as usize);
                    self.reshape_any_batch = batch == -1;
                }
                _ => return Err(self.error(node, "does not reshape to [batch, features]")),
            }
        }
        self.stage = Stage::Head;
        Ok(())
    }

    /// `Gemm(x, B, C)`: `alpha·x·B(ᵀ) + beta·C`.
    fn gemm(&mut self, node: &NodeProto) -> Result<()> {
        if graph::int(node, "transA").is_some_and(|t| t != 0) {
            return Err(self.error(node, "transposes its input"));
        }
        let (shape, weight) = self.graph.floats(node, input(node, 1))?;
        let &[rows, cols] = shape.as_slice() else {
            return Err(self.error(node, &format!("has a {shape:?} weight, not a matrix")));
        };
        let transposed = graph::int(node, "transB").is_some_and(|t| t != 0);
        let (weight, out_features, in_features) = match transposed {
            true => (weight, rows, cols),
            false => (transpose(&weight, rows, cols), cols, rows),
        };
        let alpha = graph::float(node, "alpha").unwrap_or(1.0);
        let beta = graph::float(node, "beta").unwrap_or(1.0);
        let weight = weight.into_iter().map(|w| w * alpha).collect();
        let bias = self.optional_bias(node, 2, out_features)?;
        let bias = bias.into_iter().map(|b| b * beta).collect();
        self.head.push(HeadLayer::Linear {
            in_features,
            out_features,
            weight,
            bias,
        });
        Ok(())
    }

    /// `MatMul(x, W)` with `W` `[in, out]`, and the `Add` of a bias that usually follows.
    fn matmul(&mut self, node: &'a NodeProto) -> Result<String> {
        let (shape, weight) = self.graph.floats(node, input(node, 1))?;
        let &[in_features, out_features] = shape.as_slice() else {
            return Err(self.error(node, &format!("has a {shape:?} weight, not a matrix")));
        };
        let weight = transpose(&weight, in_features, out_features);
        let (bias, end) = match self.constant_operand_of_next(node, "Add")? {
            Some((add, (dims, values))) => match broadcast(&dims, values, out_features) {
                Some(bias) => (bias, output(add)),
                None => {
                    let why = format!("adds a {dims:?} bias to {out_features} outputs");
                    return Err(self.error(add, &why));
                }
            },
            None => (vec![0.0; out_features], output(node)),
        };
        self.head.push(HeadLayer::Linear {
            in_features,
            out_features,
            weight,
            bias,
        });
        Ok(end.to_string())
    }

    /// `Mul` by a constant and the `Add` of one: batch norm as Keras' converters leave it.
    fn scale_shift(&mut self, node: &'a NodeProto, tensor: &str) -> Result<String> {
        let width = self
            .width()
            .ok_or_else(|| self.error(node, "comes before any dense layer"))?;
        let (dims, scale) = self.other_operand(node, tensor)?;
        let scale = broadcast(&dims, scale, width)
            .ok_or_else(|| self.error(node, "does not scale each feature"))?;
        let (shift, end) = match self.constant_operand_of_next(node, "Add")? {
            Some((add, (dims, values))) => {
                let shift = broadcast(&dims, values, width)
                    .ok_or_else(|| self.error(add, "does not shift each feature"))?;
                (shift, output(add))
            }
            None => (vec![0.0; width], output(node)),
        };
        self.head.push(HeadLayer::Norm(Norm::affine(scale, shift)));
        Ok(end.to_string())
    }

    /// The width of the head's latest dense layer.
    fn width(&self) -> Option<usize> {
        self.head.iter().rev().find_map(|l| match l {
            HeadLayer::Linear { out_features, .. } => Some(*out_features),
            _ => None,
        })
    }

    /// When the chain's next node after `node` is `op` with a constant other operand: it and
    /// that operand's values.
    fn constant_operand_of_next(
        &self,
        node: &NodeProto,
        op: &str,
    ) -> Result<Option<(&'a NodeProto, Constant)>> {
        let tensor = output(node);
        match self.graph.next(tensor)? {
            Some(next) if next.op_type() == op => {
                let other = next.input.iter().find(|i| *i != tensor);
                match other.and_then(|o| self.graph.constant(o)) {
                    Some(constant) => Ok(Some((next, self.graph.file.floats(constant)?))),
                    None => Ok(None),
                }
            }
            _ => Ok(None),
        }
    }

    /// The constant operand of a binary node whose other operand is the chain's tensor.
    fn other_operand(&self, node: &NodeProto, tensor: &str) -> Result<Constant> {
        let other = node
            .input
            .iter()
            .find(|i| *i != tensor)
            .map(String::as_str)
            .unwrap_or("");
        self.graph.floats(node, other)
    }

    fn dropout_ratio(&self, node: &NodeProto) -> Result<f64> {
        if let Some(ratio) = graph::float(node, "ratio") {
            return Ok(f64::from(ratio));
        }
        match node.input.get(1).filter(|n| !n.is_empty()) {
            Some(name) => {
                let (_, values) = self.graph.floats(node, name)?;
                values
                    .first()
                    .map(|&v| f64::from(v))
                    .ok_or_else(|| self.error(node, "has an empty ratio"))
            }
            None => Ok(DEFAULT_DROPOUT),
        }
    }

    /// The config and the state_dict, in the layer list's order.
    fn finish(&mut self, size: Option<[usize; 2]>) -> Result<(VggConfig, Vec<(String, Tensor)>)> {
        let file = self.graph.file;
        let fail = |why: String| file.error(format!("not a VGG-shaped graph: {why}"));
        let convs: Vec<(usize, usize, bool, bool)> = (self.features.iter())
            .filter_map(|f| match f {
                Feature::Conv {
                    in_channels,
                    out_channels,
                    norm,
                    relu,
                    ..
                } => Some((*in_channels, *out_channels, norm.is_some(), *relu)),
                Feature::Pool => None,
            })
            .collect();
        let Some(&(in_channels, _, batch_norm, _)) = convs.first() else {
            return Err(fail("it has no convolution".into()));
        };
        if convs.iter().any(|c| c.2 != batch_norm) {
            return Err(fail("some convolutions have batch norm and some do not; a VGG has it after every convolution or none".into()));
        }
        if convs.iter().any(|c| !c.3) {
            return Err(fail("a convolution has no Relu after it".into()));
        }
        let cfg: Vec<CfgItem> = (self.features.iter())
            .map(|f| match f {
                Feature::Conv { out_channels, .. } => CfgItem::Conv(*out_channels),
                Feature::Pool => CfgItem::Pool,
            })
            .collect();
        let channels = convs.last().map_or(in_channels, |c| c.1);
        let pools = cfg.iter().filter(|i| **i == CfgItem::Pool).count();
        let pool = self.pool_size(size, pools, channels).map_err(fail)?;
        if self.hwc_flatten {
            self.permute_first_linear(channels, pool);
        }
        let head = self.head_items(channels * pool * pool).map_err(fail)?;
        let config =
            VggConfig::from_features(cfg, batch_norm)?.with_overrides(&ConfigOverrides {
                in_channels: Some(in_channels),
                pool: Some(pool),
                head: Some(head),
                ..ConfigOverrides::default()
            })?;
        let tensors = self.state_dict(&config)?;
        Ok((config, tensors))
    }

    /// The adaptive pool's output size P: what the average pool makes of the feature map at
    /// the graph's input size, or (with no pool) the side of the map the flatten sees.
    fn pool_size(
        &self,
        size: Option<[usize; 2]>,
        pools: usize,
        channels: usize,
    ) -> std::result::Result<usize, String> {
        let map = size.map(|[h, w]| [h >> pools.min(63), w >> pools.min(63)]);
        let flat = self
            .head
            .iter()
            .find_map(|l| match l {
                HeadLayer::Linear { in_features, .. } => Some(*in_features),
                _ => None,
            })
            .ok_or("its head has no dense layer")?;
        let pool = match (&self.pooling, map) {
            (Pooling::Global, _) => 1,
            (Pooling::Adaptive { output }, _) => *output,
            (Pooling::Average { kernel: [kh, kw] }, Some([h, w])) => {
                if h % kh != 0 || w % kw != 0 || h / kh != w / kw {
                    return Err(format!(
                        "its {kh}×{kw} average pool does not divide the {h}×{w} feature map into P×P cells"
                    ));
                }
                h / kh
            }
            (Pooling::Average { .. }, None) => {
                return Err(
                    "its average pool needs the input's height and width fixed in the graph".into(),
                );
            }
            (Pooling::None, _) => {
                let side = pool_side(flat, channels).unwrap_or(0);
                if let Some([h, w]) = map.filter(|m| *m != [side, side]) {
                    return Err(format!(
                        "the flatten sees a {h}×{w} feature map; the first dense layer takes {flat} features"
                    ));
                }
                side
            }
        };
        let takes = pool
            .checked_mul(pool)
            .and_then(|cells| cells.checked_mul(channels));
        if let Some(width) = self.reshape_width.filter(|&w| w != flat) {
            return Err(format!(
                "the flatten makes rows of {width} features; the first dense layer takes {flat}"
            ));
        }
        // After a pool the map is P×P at any input size; without one, only at a fixed size.
        let whole_map = match self.pooling {
            Pooling::None => map.and_then(|[h, w]| channels.checked_mul(h)?.checked_mul(w)),
            _ => Some(flat),
        };
        if self.reshape_any_batch && whole_map != Some(flat) {
            return Err(format!(
                "its Reshape to [-1, {flat}] flattens one image per row only when the graph \
                 fixes the input size and the map holds {flat} values"
            ));
        }
        if pool == 0 || takes != Some(flat) {
            return Err(format!(
                "the first dense layer takes {flat} features, not {channels}·{pool}·{pool} from the feature map"
            ));
        }
        Ok(pool)
    }

    /// Rows of a flatten of an NHWC map are `(y, x, c)`; ours are `(c, y, x)`.
    fn permute_first_linear(&mut self, channels: usize, pool: usize) {
        let Some(HeadLayer::Linear {
            weight,
            in_features,
            ..
        }) = (self.head.iter_mut()).find(|l| matches!(l, HeadLayer::Linear { .. }))
        else {
            return;
        };
        let cells = pool * pool;
        let mut permuted = vec![0.0; weight.len()];
        for (row, out) in weight
            .chunks(*in_features)
            .zip(permuted.chunks_mut(*in_features))
        {
            for c in 0..channels {
                for cell in 0..cells {
                    out[c * cells + cell] = row[cell * channels + c];
                }
            }
        }
        *weight = permuted;
    }

    /// The head as config items, each dense layer checked against the width before it.
    /// An inference export leaves out dropout; a head that is torchvision's without it gets
    /// it back (the identity at inference), so that its keys are torchvision's.
    fn head_items(&self, width: usize) -> std::result::Result<Vec<HeadItem>, String> {
        let items = self.items(width)?;
        if let [
            HeadItem::Linear(hidden),
            HeadItem::ReLU,
            HeadItem::Linear(h2),
            HeadItem::ReLU,
            HeadItem::Linear(classes),
        ] = items[..]
            && hidden == h2
        {
            return Ok(torchvision_head(hidden, DEFAULT_DROPOUT, classes));
        }
        Ok(items)
    }

    fn items(&self, mut width: usize) -> std::result::Result<Vec<HeadItem>, String> {
        self.head
            .iter()
            .map(|layer| {
                Ok(match layer {
                    HeadLayer::Linear { in_features, out_features, .. } => {
                        if *in_features != width {
                            return Err(format!("a dense layer takes {in_features} features where the layer before gives {width}"));
                        }
                        width = *out_features;
                        HeadItem::Linear(*out_features)
                    }
                    HeadLayer::Norm(norm) if norm.weight.len() != width => {
                        return Err(format!("a batch norm over {} features follows a layer of {width}", norm.weight.len()));
                    }
                    HeadLayer::Norm(_) => HeadItem::BatchNorm1d,
                    HeadLayer::Relu => HeadItem::ReLU,
                    HeadLayer::Dropout(p) => HeadItem::Dropout(*p),
                    HeadLayer::Softmax => HeadItem::Softmax,
                })
            })
            .collect()
    }

    /// Hands every tensor to its key in the layer list's order.
    fn state_dict(&mut self, config: &VggConfig) -> Result<Vec<(String, Tensor)>> {
        let mut values = Vec::new();
        for feature in std::mem::take(&mut self.features) {
            if let Feature::Conv {
                weight, bias, norm, ..
            } = feature
            {
                values.extend([weight, bias]);
                values.extend(norm.into_iter().flat_map(Norm::tensors));
            }
        }
        for layer in std::mem::take(&mut self.head) {
            match layer {
                HeadLayer::Linear { weight, bias, .. } => values.extend([weight, bias]),
                HeadLayer::Norm(norm) => values.extend(norm.tensors()),
                _ => {}
            }
        }
        keyed(config, values)
    }
}

/// The state_dict of `config` from its float tensors' `values` in the layer list's order
/// (batch norms count no batches).
pub fn keyed(config: &VggConfig, values: Vec<Vec<f32>>) -> Result<Vec<(String, Tensor)>> {
    let mut values = values.into_iter();
    let mut tensors = Vec::new();
    for (key, spec) in build_layers(config).iter().flat_map(|l| l.named_tensors()) {
        let tensor = if spec.name == "num_batches_tracked" {
            Tensor::new(0i64, &Device::Cpu)?
        } else {
            let v = values
                .next()
                .ok_or_else(|| crate::error::Error::BadConfig(format!("no values for `{key}`")))?;
            Tensor::from_vec(v, spec.shape.as_slice(), &Device::Cpu)?
        };
        tensors.push((key, tensor));
    }
    Ok(tensors)
}

/// A constant's dimensions and values.
type Constant = (Vec<usize>, Vec<f32>);

/// Operand `i` of `node` (empty when absent: a missing constant is reported by the caller).
fn input(node: &NodeProto, i: usize) -> &str {
    node.input.get(i).map_or("", String::as_str)
}

/// A per-feature constant of `width` values: a scalar, `[1]`, `[F]` or `[1, F]` (shapes that
/// broadcast over `[N, F]` feature by feature).
fn broadcast(dims: &[usize], values: Vec<f32>, width: usize) -> Option<Vec<f32>> {
    match *dims {
        [] | [1] | [1, 1] => Some(vec![values[0]; width]),
        [f] | [1, f] if f == width => Some(values),
        _ => None,
    }
}
