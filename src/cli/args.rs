//! Arguments shared by subcommands: the model (`--arch` / custom configs) and shapes.

use std::path::PathBuf;

use clap::{Args, ValueEnum};

use vgg::error::{Error, Result};
use vgg::model::head::parse_head;
use vgg::model::layers::Container;
use vgg::{ArchChoice, ConfigOverrides, ModelSource, VggConfig};

/// How to change or replace a named arch's config. With `custom`, `--cfg` is required.
#[derive(Debug, Clone, Default, Args)]
pub struct ModelArgs {
    /// Custom feature config (with arch `custom`): channels and `M` pools, e.g. 32,M,64,M
    #[arg(long, value_name = "LIST")]
    pub cfg: Option<String>,
    /// Batch norm after every convolution (with arch `custom`)
    #[arg(long)]
    pub batch_norm: bool,
    /// Width of the two hidden classifier layers [default: 4096]
    #[arg(long, value_name = "N")]
    pub hidden: Option<usize>,
    /// Output size of the adaptive average pool [default: 7]
    #[arg(long, value_name = "N")]
    pub pool: Option<usize>,
    /// Number of output classes [default: 1000]
    #[arg(long, value_name = "K")]
    pub num_classes: Option<usize>,
    /// Dropout probability in the classifier [default: 0.5]
    #[arg(long, allow_negative_numbers = true, value_name = "P")]
    pub dropout: Option<f64>,
    /// The whole classifier head, item by item: N (a Linear to N features), relu, dropout,
    /// dropout=P, bn (BatchNorm1d), softmax. torchvision's is
    /// 4096,relu,dropout,4096,relu,dropout,1000
    #[arg(long, value_name = "ITEMS")]
    pub head: Option<String>,
}

impl ModelArgs {
    /// The changes to a config's head these flags ask for.
    pub fn overrides(&self) -> Result<ConfigOverrides> {
        Ok(ConfigOverrides {
            hidden: self.hidden,
            pool: self.pool,
            num_classes: self.num_classes,
            dropout: self.dropout,
            head: self.head.as_deref().map(parse_head).transpose()?,
            in_channels: None,
        })
    }

    /// The first of these flags given, if any: a command that draws or checks a network it
    /// does not build from them refuses them rather than ignore them.
    pub fn first_given(&self) -> Option<&'static str> {
        let given = [
            (self.cfg.is_some(), "--cfg"),
            (self.batch_norm, "--batch-norm"),
            (self.hidden.is_some(), "--hidden"),
            (self.pool.is_some(), "--pool"),
            (self.num_classes.is_some(), "--num-classes"),
            (self.dropout.is_some(), "--dropout"),
            (self.head.is_some(), "--head"),
        ];
        given.into_iter().find(|(on, _)| *on).map(|(_, flag)| flag)
    }

    /// The network `arch` (`auto`, a torchvision name or `custom`) names with these flags.
    pub fn arch(&self, arch: &str) -> Result<ArchChoice> {
        ArchChoice::parse(arch, self.cfg.as_deref(), self.batch_norm)
    }

    /// The model `arch` names with these flags, loaded from `weights` if given.
    pub fn source(&self, arch: &str, weights: Option<PathBuf>) -> Result<ModelSource> {
        Ok(ModelSource {
            arch: self.arch(arch)?,
            overrides: self.overrides()?,
            weights,
            ..ModelSource::default()
        })
    }

    /// The config for `arch` (a torchvision name or `custom`) with these changes applied.
    pub fn config(&self, arch: &str) -> Result<VggConfig> {
        self.source(arch, None)?.config(None)
    }
}

/// A part of the model whose parameters can be frozen.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Part {
    Features,
    Classifier,
}

impl From<Part> for Container {
    fn from(part: Part) -> Container {
        match part {
            Part::Features => Container::Features,
            Part::Classifier => Container::Classifier,
        }
    }
}

/// Parses `3x64x64` or `1x3x224x224` into its positive sizes (3 or 4 of them).
pub fn parse_shape(text: &str) -> Result<Vec<usize>> {
    let bad = |why: &str| Error::BadInputShape {
        text: text.to_string(),
        why: why.to_string(),
    };
    let sizes = text
        .split(['x', 'X', '×', ','])
        .map(|part| {
            let part = part.trim();
            match part.parse::<i64>() {
                Ok(v) if v > 0 => usize::try_from(v).map_err(|_| bad("size too large")),
                Ok(_) => Err(bad("sizes must be positive")),
                Err(_) => Err(bad(&format!(
                    "`{part}` is not a number; expected CxHxW or NxCxHxW, e.g. 3x224x224"
                ))),
            }
        })
        .collect::<Result<Vec<usize>>>()?;
    if !(3..=4).contains(&sizes.len()) {
        return Err(bad(&format!(
            "expected 3 numbers (CxHxW) or 4 (NxCxHxW), got {}",
            sizes.len()
        )));
    }
    Ok(sizes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shapes() {
        assert_eq!(parse_shape("3x64x64").unwrap(), vec![3, 64, 64]);
        assert_eq!(parse_shape("1x3x224x224").unwrap(), vec![1, 3, 224, 224]);
        assert_eq!(parse_shape("3×32×48").unwrap(), vec![3, 32, 48]);
        for bad in [
            "",
            "3x64",
            "3x64x",
            "0x64x64",
            "-3x64x64",
            "3x64x64x1x1",
            "axbxc",
        ] {
            assert!(parse_shape(bad).is_err(), "{bad}");
        }
        let err = parse_shape("3x0x64").unwrap_err().to_string();
        assert_eq!(err, "bad input shape `3x0x64`: sizes must be positive");
    }

    #[test]
    fn custom_needs_cfg_and_named_archs_reject_it() {
        assert!(ModelArgs::default().config("custom").is_err());
        let args = ModelArgs {
            cfg: Some("8,M".into()),
            ..Default::default()
        };
        assert!(args.config("vgg11").is_err());
        let config = args.config("custom").unwrap();
        assert_eq!(config.num_pools(), 1);
    }
}
