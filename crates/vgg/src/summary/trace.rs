//! A model's summary rows — root, containers and layers in torchinfo's pre-order — with
//! shapes, parameter counts and mult-adds, all derived from the layer list. Both printers
//! and the JSON output read these rows; nothing here runs the network.

use crate::error::Result;
use crate::limits::too_large;
use crate::model::config::VggConfig;
use crate::model::layers::{Container, Form, LayerSpec, build_layers_in, propagate_shapes};

/// Bytes per number in every size the tools report (they assume f32).
pub const BYTES_PER_VALUE: u64 = 4;

/// One module of the model in the summary.
#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    /// PyTorch class name: `VGG`, `Sequential`, `Conv2d`…
    pub class_name: &'static str,
    /// Module path and state_dict key prefix (`""` for the root).
    pub path: String,
    /// 0 for the root, 1 for `features` / `avgpool` / `classifier`, 2 inside them.
    pub depth: usize,
    pub is_leaf: bool,
    /// Shapes without the batch dimension.
    pub input_shape: Vec<usize>,
    pub output_shape: Vec<usize>,
    pub kernel_shape: Option<String>,
    /// Weights and biases (containers: of everything inside them).
    pub params: usize,
    pub trainable_params: usize,
    /// torchinfo's count for the whole batch (containers: the sum over their layers).
    pub mult_adds: u64,
    /// Multiply-accumulates without biases for the whole batch (torchvision's FLOP count).
    pub macs: u64,
}

impl Row {
    /// Elements of the output for the whole batch.
    pub fn output_elements(&self, batch: usize) -> u64 {
        batch as u64 * self.output_shape.iter().product::<usize>() as u64
    }
}

/// The summary of one model at one input shape.
#[derive(Debug, Clone, PartialEq)]
pub struct Summary {
    pub model: String,
    pub batch: usize,
    pub input: [usize; 3],
    pub rows: Vec<Row>,
}

/// Where the summarised network's input channels come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Channels {
    /// An architecture without weights (a name, a config): it takes the input's, so a
    /// `1x28x28` input summarises a one-channel variant.
    FromInput,
    /// A model or a checkpoint: its first convolution fixes them, and an input with
    /// another count is refused, as torchsummary fails on it.
    Own,
}

impl Summary {
    /// Like [`Summary::of_form`], the config's input channels settled by `channels`.
    pub fn of_input(
        config: &VggConfig,
        channels: Channels,
        form: Form,
        batch: usize,
        chw: [usize; 3],
        frozen: &[Container],
    ) -> Result<Self> {
        match channels {
            Channels::Own => Self::of_form(config, form, batch, chw, frozen),
            Channels::FromInput => {
                let config = config.with_in_channels(chw[0])?;
                Self::of_form(&config, form, batch, chw, frozen)
            }
        }
    }

    /// Builds the rows for `config` on a batch of `batch` images of shape `[C, H, W]`;
    /// parameters of the `frozen` containers count as non-trainable.
    pub fn new(
        config: &VggConfig,
        batch: usize,
        chw: [usize; 3],
        frozen: &[Container],
    ) -> Result<Self> {
        Self::of_form(config, Form::Standard, batch, chw, frozen)
    }

    /// Like [`Summary::new`] for the network in `form`. The dense form is summarised as
    /// PyTorch would summarise the equivalent `nn.Sequential(OrderedDict(features=…,
    /// classifier=nn.Sequential(<convolutions>)))`: same module paths, no `avgpool`.
    pub fn of_form(
        config: &VggConfig,
        form: Form,
        batch: usize,
        chw: [usize; 3],
        frozen: &[Container],
    ) -> Result<Self> {
        let layers = build_layers_in(config, form);
        let shapes = propagate_shapes(config, &layers, chw)?;
        let too_large = || {
            let [c, h, w] = chw;
            too_large(format!(
                "the summary of {} at {batch}x{c}x{h}x{w}",
                config.name()
            ))
        };
        let Some(leaves) = layers
            .iter()
            .zip(shapes)
            .filter(|(layer, _)| layer.is_module())
            .map(|(layer, shape)| leaf_row(layer, shape.input, shape.output, batch, frozen))
            .collect::<Option<Vec<Row>>>()
        else {
            return Err(too_large());
        };
        let root_class = match form {
            Form::Standard => "VGG",
            Form::Dense => "Sequential",
        };
        let Some(root) = container_row(root_class, String::new(), 0, &leaves) else {
            return Err(too_large());
        };
        let mut rows = vec![root];
        for container in [
            Container::Features,
            Container::Avgpool,
            Container::Classifier,
        ] {
            let children: Vec<Row> = leaves
                .iter()
                .filter(|r| r.path.split('.').next() == Some(container.name()))
                .cloned()
                .collect();
            if container == Container::Avgpool {
                rows.extend(children.into_iter().map(|r| Row { depth: 1, ..r }));
            } else {
                let name = container.name().to_string();
                rows.extend(container_row("Sequential", name, 1, &children));
                rows.extend(children);
            }
        }
        let summary = Summary {
            model: config.name().to_string(),
            batch,
            input: chw,
            rows,
        };
        match summary.largest_size() {
            Some(_) => Ok(summary),
            None => Err(too_large()),
        }
    }

    /// The largest number a printer derives from the rows: torchinfo's estimated total size
    /// in bytes (input, outputs twice, parameters), computed with checked arithmetic in
    /// `i64`, torchsummary's integer type. When it fits, so does every smaller sum that the
    /// printers compute with plain arithmetic; `None` when it overflows.
    fn largest_size(&self) -> Option<i64> {
        let bytes = BYTES_PER_VALUE as i64;
        let batch = i64::try_from(self.batch).ok()?;
        let elements = |dims: &[usize]| {
            dims.iter()
                .try_fold(batch, |acc, &d| acc.checked_mul(i64::try_from(d).ok()?))
        };
        let outputs = self
            .leaves()
            .try_fold(0i64, |sum, r| sum.checked_add(elements(&r.output_shape)?))?;
        let params = i64::try_from(self.rows[0].params).ok()?;
        i64::try_from(self.rows[0].mult_adds).ok()?;
        elements(&self.input)?
            .checked_add(outputs.checked_mul(2)?)?
            .checked_add(params)?
            .checked_mul(bytes)?
            .checked_add(1 << 20)
    }

    /// The layers (modules without children), in execution order.
    pub fn leaves(&self) -> impl Iterator<Item = &Row> {
        self.rows.iter().filter(|r| r.is_leaf)
    }

    pub fn total_params(&self) -> usize {
        self.leaves().map(|r| r.params).sum()
    }

    pub fn trainable_params(&self) -> usize {
        self.leaves().map(|r| r.trainable_params).sum()
    }

    pub fn total_mult_adds(&self) -> u64 {
        self.leaves().map(|r| r.mult_adds).sum()
    }

    pub fn total_macs(&self) -> u64 {
        self.leaves().map(|r| r.macs).sum()
    }

    /// Bytes of the input batch.
    pub fn input_bytes(&self) -> u64 {
        self.batch as u64 * self.input.iter().product::<usize>() as u64 * BYTES_PER_VALUE
    }

    /// Bytes of every layer's output for one forward pass (what inference must produce).
    pub fn activation_bytes(&self) -> u64 {
        self.leaves()
            .map(|r| r.output_elements(self.batch) * BYTES_PER_VALUE)
            .sum()
    }
}

fn leaf_row(
    layer: &LayerSpec,
    input_shape: Vec<usize>,
    output_shape: Vec<usize>,
    batch: usize,
    frozen: &[Container],
) -> Option<Row> {
    let params = layer.kind.num_params();
    let trainable = !frozen.contains(&layer.container);
    let batch = batch as u64;
    Some(Row {
        class_name: layer.kind.class_name(),
        path: layer.path(),
        depth: 2,
        is_leaf: true,
        kernel_shape: layer.kind.kernel_shape(),
        params,
        trainable_params: if trainable { params } else { 0 },
        mult_adds: batch.checked_mul(layer.kind.mult_adds_with_bias(&output_shape)?)?,
        macs: batch.checked_mul(layer.kind.macs(&output_shape)?)?,
        input_shape,
        output_shape,
    })
}

/// A container's row: its children's sums; `None` when a sum overflows.
fn container_row(
    class_name: &'static str,
    path: String,
    depth: usize,
    children: &[Row],
) -> Option<Row> {
    let first = children.first().expect("every container has layers");
    let last = children.last().expect("every container has layers");
    let sum = |value: fn(&Row) -> u64| {
        children
            .iter()
            .try_fold(0u64, |sum, r| sum.checked_add(value(r)))
    };
    Some(Row {
        class_name,
        path,
        depth,
        is_leaf: false,
        input_shape: first.input_shape.clone(),
        output_shape: last.output_shape.clone(),
        kernel_shape: None,
        params: children.iter().map(|r| r.params).sum(),
        trainable_params: children.iter().map(|r| r.trainable_params).sum(),
        mult_adds: sum(|r| r.mult_adds)?,
        macs: sum(|r| r.macs)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::config::Arch;

    /// torchvision's documented parameter counts and GFLOPS (MACs without bias at 224×224).
    const TORCHVISION: [(Arch, usize, f64); 8] = [
        (Arch::Vgg11, 132_863_336, 7.609),
        (Arch::Vgg11Bn, 132_868_840, 7.609),
        (Arch::Vgg13, 133_047_848, 11.308),
        (Arch::Vgg13Bn, 133_053_736, 11.308),
        (Arch::Vgg16, 138_357_544, 15.470),
        (Arch::Vgg16Bn, 138_365_992, 15.470),
        (Arch::Vgg19, 143_667_240, 19.632),
        (Arch::Vgg19Bn, 143_678_248, 19.632),
    ];

    #[test]
    fn params_and_gflops_match_torchvision() {
        for (arch, params, gflops) in TORCHVISION {
            let s = Summary::new(&VggConfig::from_arch(arch), 1, [3, 224, 224], &[]).unwrap();
            assert_eq!(s.total_params(), params, "{arch}");
            let got = s.total_macs() as f64 * 1e-9;
            assert!((got - gflops).abs() < 5e-4, "{arch}: {got}");
        }
    }

    #[test]
    fn rows_are_preorder_with_containers() {
        let s = Summary::new(&VggConfig::from_arch(Arch::Vgg11), 2, [3, 64, 64], &[]).unwrap();
        let heads: Vec<(&str, &str, usize)> = s
            .rows
            .iter()
            .filter(|r| !r.is_leaf || r.depth == 1)
            .map(|r| (r.class_name, r.path.as_str(), r.depth))
            .collect();
        assert_eq!(
            heads,
            [
                ("VGG", "", 0),
                ("Sequential", "features", 1),
                ("AdaptiveAvgPool2d", "avgpool", 1),
                ("Sequential", "classifier", 1)
            ]
        );
        assert_eq!(s.rows[0].output_shape, vec![1000]);
        let classifier = s.rows.iter().find(|r| r.path == "classifier").unwrap();
        assert_eq!(classifier.input_shape, vec![25088]);
    }

    #[test]
    fn freezing_moves_params_to_non_trainable() {
        let config = VggConfig::from_arch(Arch::Vgg11Bn);
        let s = Summary::new(&config, 1, [3, 64, 64], &[Container::Classifier]).unwrap();
        assert_eq!(s.total_params(), 132_868_840);
        assert_eq!(s.trainable_params(), 9_225_984);
    }
}
