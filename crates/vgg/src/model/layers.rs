//! The layer list: one `LayerSpec` per torchvision module (plus the functional flatten), built
//! from a [`VggConfig`]. Forward passes, state_dict names, parameter counts, shapes and
//! mult-adds are all folds over this list, so they cannot disagree.

use crate::error::{Error, Result};
use crate::limits::element_count;
use crate::model::config::{CfgItem, VggConfig};
use crate::model::head::HeadItem;

/// `nn.BatchNorm2d`'s defaults, which torchvision's VGGs use: set here once, read from the
/// layer list by every path that normalises (reference model, training, engine folding).
pub const BN_EPS: f64 = 1e-5;
pub const BN_MOMENTUM: f64 = 0.1;

/// The top-level children of torchvision's `VGG` module.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Container {
    Features,
    Avgpool,
    Classifier,
}

impl std::str::FromStr for Container {
    type Err = Error;

    fn from_str(name: &str) -> Result<Self> {
        match name {
            "features" => Ok(Container::Features),
            "avgpool" => Ok(Container::Avgpool),
            "classifier" => Ok(Container::Classifier),
            other => Err(Error::BadArgument(format!(
                "`{other}` is not a part of the model; valid: features, avgpool, classifier"
            ))),
        }
    }
}

impl Container {
    pub fn name(self) -> &'static str {
        match self {
            Container::Features => "features",
            Container::Avgpool => "avgpool",
            Container::Classifier => "classifier",
        }
    }
}

/// What a layer computes. Convolutions are always 3×3, stride 1, padding 1; max-pools 2×2,
/// stride 2 — the only kinds VGG has.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum LayerKind {
    Conv2d {
        in_channels: usize,
        out_channels: usize,
    },
    BatchNorm2d {
        channels: usize,
        /// Added to the variance before the square root.
        eps: f64,
        /// Weight of the batch statistics in the running-statistics update.
        momentum: f64,
    },
    ReLU,
    MaxPool2d,
    AdaptiveAvgPool2d {
        output: usize,
    },
    /// `torch.flatten(x, 1)` between `avgpool` and `classifier`: a function, not a module.
    Flatten,
    Linear {
        in_features: usize,
        out_features: usize,
    },
    Dropout {
        p: f64,
    },
    /// Batch norm over the features of a `[N, F]` classifier activation (a configured head;
    /// torchvision's has none). Same tensors and statistics as [`LayerKind::BatchNorm2d`].
    BatchNorm1d {
        features: usize,
        eps: f64,
        momentum: f64,
    },
    /// `nn.Softmax(dim=1)` over the classes, ending a configured head.
    Softmax,
    /// A classifier `Linear` applied as a `k×k` convolution (stride 1, no padding) in the
    /// network's dense form (paper §3.2): fc6 becomes a `pool×pool` convolution over the
    /// feature map, fc7 and fc8 `1×1` ones. Same weights, reshaped to `[out, in, k, k]`.
    FcConv {
        in_channels: usize,
        out_channels: usize,
        kernel: usize,
    },
}

/// Which form of the network a layer list describes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Form {
    /// torchvision's `VGG`: features, adaptive average pool, flatten, linear classifier.
    #[default]
    Standard,
    /// Fully convolutional (paper §3.2): the classifier's linear layers as convolutions over
    /// the feature map, giving a class score map for any input at least the native size.
    Dense,
}

/// Whether a named tensor is learned or a running statistic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TensorRole {
    Parameter,
    Buffer,
}

/// One tensor of a layer's state_dict entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TensorSpec {
    /// `weight`, `bias`, `running_mean`, `running_var` or `num_batches_tracked`.
    pub name: &'static str,
    pub shape: Vec<usize>,
    pub role: TensorRole,
}

impl LayerKind {
    /// The PyTorch class name, as the summaries print it.
    pub fn class_name(&self) -> &'static str {
        match self {
            LayerKind::Conv2d { .. } => "Conv2d",
            LayerKind::BatchNorm2d { .. } => "BatchNorm2d",
            LayerKind::ReLU => "ReLU",
            LayerKind::MaxPool2d => "MaxPool2d",
            LayerKind::AdaptiveAvgPool2d { .. } => "AdaptiveAvgPool2d",
            LayerKind::Flatten => "flatten",
            LayerKind::Linear { .. } => "Linear",
            LayerKind::Dropout { .. } => "Dropout",
            LayerKind::BatchNorm1d { .. } => "BatchNorm1d",
            LayerKind::Softmax => "Softmax",
            LayerKind::FcConv { .. } => "Conv2d",
        }
    }

    /// The tensors this layer owns, in torchvision's state_dict order.
    pub fn tensors(&self) -> Vec<TensorSpec> {
        let param = |name, shape| TensorSpec {
            name,
            shape,
            role: TensorRole::Parameter,
        };
        let buffer = |name, shape| TensorSpec {
            name,
            shape,
            role: TensorRole::Buffer,
        };
        match *self {
            LayerKind::Conv2d {
                in_channels,
                out_channels,
            } => vec![
                param("weight", vec![out_channels, in_channels, 3, 3]),
                param("bias", vec![out_channels]),
            ],
            LayerKind::BatchNorm2d { channels, .. }
            | LayerKind::BatchNorm1d {
                features: channels, ..
            } => vec![
                param("weight", vec![channels]),
                param("bias", vec![channels]),
                buffer("running_mean", vec![channels]),
                buffer("running_var", vec![channels]),
                buffer("num_batches_tracked", vec![]),
            ],
            LayerKind::Linear {
                in_features,
                out_features,
            } => vec![
                param("weight", vec![out_features, in_features]),
                param("bias", vec![out_features]),
            ],
            LayerKind::FcConv {
                in_channels,
                out_channels,
                kernel,
            } => vec![
                param("weight", vec![out_channels, in_channels, kernel, kernel]),
                param("bias", vec![out_channels]),
            ],
            _ => vec![],
        }
    }

    /// Learned parameters (weights and biases; not running statistics).
    pub fn num_params(&self) -> usize {
        self.tensors()
            .iter()
            .filter(|t| t.role == TensorRole::Parameter)
            .map(|t| t.shape.iter().product::<usize>())
            .sum()
    }

    /// Output shape (without the batch dimension) for an input of shape `input`.
    /// Inputs are assumed valid: [`propagate_shapes`] checks sizes first.
    pub fn output_shape(&self, input: &[usize]) -> Vec<usize> {
        match *self {
            LayerKind::Conv2d { out_channels, .. } => vec![out_channels, input[1], input[2]],
            LayerKind::MaxPool2d => vec![input[0], input[1] / 2, input[2] / 2],
            LayerKind::AdaptiveAvgPool2d { output } => vec![input[0], output, output],
            LayerKind::Flatten => vec![input.iter().product()],
            LayerKind::Linear { out_features, .. } => vec![out_features],
            LayerKind::FcConv {
                out_channels,
                kernel,
                ..
            } => vec![out_channels, input[1] + 1 - kernel, input[2] + 1 - kernel],
            LayerKind::BatchNorm2d { .. }
            | LayerKind::BatchNorm1d { .. }
            | LayerKind::ReLU
            | LayerKind::Dropout { .. }
            | LayerKind::Softmax => input.to_vec(),
        }
    }

    /// Multiply-accumulates for one image, counted as torchinfo does: a convolution's weights
    /// *and bias* once per output pixel, a linear or batch-norm layer's parameters once.
    /// `None` when the count overflows.
    pub fn mult_adds_with_bias(&self, output: &[usize]) -> Option<u64> {
        let params = self.num_params() as u64;
        match self {
            LayerKind::Conv2d { .. } | LayerKind::FcConv { .. } => per_pixel(params, output),
            LayerKind::BatchNorm2d { .. }
            | LayerKind::BatchNorm1d { .. }
            | LayerKind::Linear { .. } => Some(params),
            _ => Some(0),
        }
    }

    /// Multiply-accumulates for one image without biases, as torchvision's GFLOPS metadata
    /// counts them: only convolutions and linear layers. `None` when the count overflows.
    pub fn macs(&self, output: &[usize]) -> Option<u64> {
        match *self {
            LayerKind::Conv2d {
                in_channels,
                out_channels,
            } => per_pixel((in_channels * out_channels * 9) as u64, output),
            LayerKind::Linear {
                in_features,
                out_features,
            } => (in_features as u64).checked_mul(out_features as u64),
            LayerKind::FcConv {
                in_channels,
                out_channels,
                kernel,
            } => per_pixel(
                (in_channels * out_channels * kernel * kernel) as u64,
                output,
            ),
            _ => Some(0),
        }
    }

    /// torchinfo's "Kernel Shape" cell.
    pub fn kernel_shape(&self) -> Option<String> {
        match self {
            LayerKind::Conv2d { .. } => Some("[3, 3]".into()),
            LayerKind::FcConv { kernel, .. } => Some(format!("[{kernel}, {kernel}]")),
            LayerKind::MaxPool2d => Some("2".into()),
            _ => None,
        }
    }
}

/// A layer and where torchvision puts it.
#[derive(Debug, Clone, PartialEq)]
pub struct LayerSpec {
    pub container: Container,
    /// Index inside `features` / `classifier`; `None` for `avgpool` and the flatten.
    pub index: Option<usize>,
    pub kind: LayerKind,
}

impl LayerSpec {
    /// The module path and state_dict key prefix: `features.7`, `avgpool`, `classifier.6`.
    pub fn path(&self) -> String {
        match self.index {
            Some(i) => format!("{}.{i}", self.container.name()),
            None => self.container.name().to_string(),
        }
    }

    /// Whether this is an `nn.Module` (every layer but the functional flatten).
    pub fn is_module(&self) -> bool {
        self.kind != LayerKind::Flatten
    }

    /// `(state_dict key, tensor)` pairs of this layer.
    pub fn named_tensors(&self) -> Vec<(String, TensorSpec)> {
        let path = self.path();
        self.kind
            .tensors()
            .into_iter()
            .map(|t| (format!("{path}.{}", t.name), t))
            .collect()
    }
}

/// One stage of the feature stack (the paper's conv blocks): its layers before a max-pool
/// (convolutions, batch norms, ReLUs) and that max-pool, as indices into the layer list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stage {
    pub layers: std::ops::Range<usize>,
    /// The max-pool that ends it; `None` for convolutions after the last one.
    pub pool: Option<usize>,
}

impl Stage {
    /// Indices of its convolutions.
    pub fn convs<'a>(&'a self, layers: &'a [LayerSpec]) -> impl Iterator<Item = usize> + 'a {
        (self.layers.clone()).filter(|&i| matches!(layers[i].kind, LayerKind::Conv2d { .. }))
    }
}

/// The stages of `layers`' feature stack, one per max-pool (a pool right after another
/// ends a stage without convolutions), then any layers after the last pool.
pub fn stages(layers: &[LayerSpec]) -> Vec<Stage> {
    let features = layers
        .iter()
        .take_while(|l| l.container == Container::Features)
        .count();
    let mut stages = Vec::new();
    let mut start = 0;
    for (i, layer) in layers[..features].iter().enumerate() {
        if layer.kind == LayerKind::MaxPool2d {
            stages.push(Stage {
                layers: start..i,
                pool: Some(i),
            });
            start = i + 1;
        }
    }
    if start < features {
        stages.push(Stage {
            layers: start..features,
            pool: None,
        });
    }
    stages
}

/// Builds the layer list exactly as torchvision's `make_layers` and `VGG.__init__` do.
pub fn build_layers(config: &VggConfig) -> Vec<LayerSpec> {
    build_layers_in(config, Form::Standard)
}

/// The layer list of the network in `form`. Both forms share the features and the
/// classifier's module paths (so their state_dict keys are the same); the dense form has no
/// adaptive pool or flatten, and its classifier layers are convolutions.
pub fn build_layers_in(config: &VggConfig, form: Form) -> Vec<LayerSpec> {
    let mut layers = feature_layers(config);
    if form == Form::Standard {
        layers.push(LayerSpec {
            container: Container::Avgpool,
            index: None,
            kind: LayerKind::AdaptiveAvgPool2d {
                output: config.pool(),
            },
        });
        layers.push(LayerSpec {
            container: Container::Classifier,
            index: None,
            kind: LayerKind::Flatten,
        });
    }
    for (i, kind) in classifier_layers(config, form).into_iter().enumerate() {
        layers.push(LayerSpec {
            container: Container::Classifier,
            index: Some(i),
            kind,
        });
    }
    layers
}

/// `features`: per config item a convolution (with batch norm) and ReLU, or a max-pool.
fn feature_layers(config: &VggConfig) -> Vec<LayerSpec> {
    let mut layers = Vec::new();
    let mut in_channels = config.in_channels();
    for item in config.features() {
        let kinds = match *item {
            CfgItem::Pool => vec![LayerKind::MaxPool2d],
            CfgItem::Conv(out_channels) => {
                let conv = LayerKind::Conv2d {
                    in_channels,
                    out_channels,
                };
                in_channels = out_channels;
                let bn = LayerKind::BatchNorm2d {
                    channels: out_channels,
                    eps: BN_EPS,
                    momentum: BN_MOMENTUM,
                };
                let bn = config.batch_norm().then_some(bn);
                [Some(conv), bn, Some(LayerKind::ReLU)]
                    .into_iter()
                    .flatten()
                    .collect()
            }
        };
        for kind in kinds {
            let index = Some(layers.len());
            layers.push(LayerSpec {
                container: Container::Features,
                index,
                kind,
            });
        }
    }
    layers
}

/// `classifier`: the config's head, item by item. In the dense form each Linear is the
/// equivalent convolution (the first spans the `pool×pool` map, later ones are 1×1) and a
/// batch norm normalises the score map's channels.
fn classifier_layers(config: &VggConfig, form: Form) -> Vec<LayerKind> {
    let (pool, channels) = (config.pool(), config.out_channels());
    let mut width = channels * pool * pool;
    let mut first = true;
    config
        .head()
        .iter()
        .map(|item| match (*item, form) {
            (HeadItem::Linear(out_features), Form::Standard) => {
                let in_features = std::mem::replace(&mut width, out_features);
                LayerKind::Linear {
                    in_features,
                    out_features,
                }
            }
            (HeadItem::Linear(out_channels), Form::Dense) => {
                let in_channels = if first { channels } else { width };
                let kernel = if std::mem::replace(&mut first, false) {
                    pool
                } else {
                    1
                };
                width = out_channels;
                LayerKind::FcConv {
                    in_channels,
                    out_channels,
                    kernel,
                }
            }
            (HeadItem::BatchNorm1d, Form::Standard) => LayerKind::BatchNorm1d {
                features: width,
                eps: BN_EPS,
                momentum: BN_MOMENTUM,
            },
            (HeadItem::BatchNorm1d, Form::Dense) => LayerKind::BatchNorm2d {
                channels: width,
                eps: BN_EPS,
                momentum: BN_MOMENTUM,
            },
            (HeadItem::ReLU, _) => LayerKind::ReLU,
            (HeadItem::Dropout(p), _) => LayerKind::Dropout { p },
            (HeadItem::Softmax, _) => LayerKind::Softmax,
        })
        .collect()
}

/// How many layers produce the logits: all but a final softmax. Training and losses stop
/// there; inference runs the whole list.
pub fn logits_len(layers: &[LayerSpec]) -> usize {
    match layers.last() {
        Some(last) if last.kind == LayerKind::Softmax => layers.len() - 1,
        _ => layers.len(),
    }
}

/// A layer's input and output shapes, without the batch dimension.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LayerShapes {
    pub input: Vec<usize>,
    pub output: Vec<usize>,
}

/// Propagates an image shape `[C, H, W]` through the layers, after checking that the network
/// accepts it (channel count, and at least one pixel left after every max-pool) and that no
/// layer's element count overflows.
pub fn propagate_shapes(
    config: &VggConfig,
    layers: &[LayerSpec],
    chw: [usize; 3],
) -> Result<Vec<LayerShapes>> {
    let [channels, height, width] = chw;
    if channels != config.in_channels() {
        return Err(Error::ChannelMismatch {
            model: config.name().to_string(),
            expected: config.in_channels(),
            got: channels,
        });
    }
    let min = config.min_input_size();
    if height < min || width < min {
        return Err(Error::InputTooSmall {
            model: config.name().to_string(),
            min,
            pools: pools_in_words(config.num_pools()),
            height,
            width,
        });
    }
    let overflows = || {
        let what = format!("{} on a {channels}x{height}x{width} input", config.name());
        crate::limits::too_large(what)
    };
    if element_count(&chw).is_none() {
        return Err(overflows());
    }
    let mut shape = chw.to_vec();
    layers
        .iter()
        .map(|layer| {
            if let LayerKind::FcConv { kernel, .. } = layer.kind
                && (shape[1] < kernel || shape[2] < kernel)
            {
                return Err(dense_too_small(config, height, width));
            }
            let output = layer.kind.output_shape(&shape);
            if element_count(&output).is_none() {
                return Err(overflows());
            }
            let input = std::mem::replace(&mut shape, output.clone());
            Ok(LayerShapes { input, output })
        })
        .collect()
}

/// The dense form slides fc6 over the feature map, which must hold at least one window.
fn dense_too_small(config: &VggConfig, height: usize, width: usize) -> Error {
    let min = config.native_input_size();
    Error::BadArgument(format!(
        "the dense form of {} needs at least {min}×{min} input (fc6 becomes a {p}×{p} \
         convolution over the feature map after {pools}); got {height}×{width}",
        config.name(),
        p = config.pool(),
        pools = pools_in_words(config.num_pools()),
    ))
}

/// `count` once per pixel of a `[C, H, W]` output.
fn per_pixel(count: u64, output: &[usize]) -> Option<u64> {
    count
        .checked_mul(output[1] as u64)?
        .checked_mul(output[2] as u64)
}

/// `five 2×2 max-pools`, `one 2×2 max-pool`.
fn pools_in_words(n: usize) -> String {
    const WORDS: [&str; 11] = [
        "zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten",
    ];
    let count = WORDS
        .get(n)
        .map_or_else(|| n.to_string(), |w| w.to_string());
    format!("{count} 2×2 max-pool{}", if n == 1 { "" } else { "s" })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::config::Arch;

    #[test]
    fn vgg16_key_prefixes_match_torchvision() {
        let layers = build_layers(&VggConfig::from_arch(Arch::Vgg16));
        let convs: Vec<String> = layers
            .iter()
            .filter(|l| matches!(l.kind, LayerKind::Conv2d { .. }))
            .map(LayerSpec::path)
            .collect();
        let expected: Vec<String> = [0, 2, 5, 7, 10, 12, 14, 17, 19, 21, 24, 26, 28]
            .iter()
            .map(|i| format!("features.{i}"))
            .collect();
        assert_eq!(convs, expected);
    }

    #[test]
    fn stages_end_at_each_max_pool() {
        let config = VggConfig::custom("8,8,M,M,16,M,32", true).unwrap();
        let layers = build_layers(&config);
        let got: Vec<(Vec<String>, Option<String>)> = (stages(&layers).iter())
            .map(|s| {
                let convs = s.convs(&layers).map(|i| layers[i].path()).collect();
                (convs, s.pool.map(|p| layers[p].path()))
            })
            .collect();
        let paths = |p: &[&str]| p.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(
            got,
            [
                (
                    paths(&["features.0", "features.3"]),
                    Some("features.6".into())
                ),
                (paths(&[]), Some("features.7".into())),
                (paths(&["features.8"]), Some("features.11".into())),
                (paths(&["features.12"]), None),
            ]
        );
    }

    #[test]
    fn one_pool_reads_as_one() {
        let config = VggConfig::custom("8,M", false).unwrap();
        let err = propagate_shapes(&config, &build_layers(&config), [3, 1, 1])
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("at least 2×2 input: one 2×2 max-pool; got 1×1"),
            "{err}"
        );
    }

    #[test]
    fn small_input_is_explained() {
        let config = VggConfig::from_arch(Arch::Vgg11);
        let layers = build_layers(&config);
        let err = propagate_shapes(&config, &layers, [3, 31, 64]).unwrap_err();
        assert_eq!(
            err.to_string(),
            "vgg11 needs at least 32×32 input: five 2×2 max-pools; got 31×64"
        );
        let shapes = propagate_shapes(&config, &layers, [3, 32, 33]).unwrap();
        assert_eq!(shapes.last().unwrap().output, vec![1000]);
    }

    #[test]
    fn adaptive_pool_and_flatten_feed_classifier() {
        let layers = build_layers(&VggConfig::from_arch(Arch::Vgg11));
        let first_linear = layers
            .iter()
            .find(|l| matches!(l.kind, LayerKind::Linear { .. }))
            .unwrap();
        assert_eq!(first_linear.path(), "classifier.0");
        assert_eq!(first_linear.kind.num_params(), 25088 * 4096 + 4096);
    }
}
