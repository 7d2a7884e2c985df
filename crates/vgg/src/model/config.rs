//! Which VGG network to build: torchvision's eight named models, or a custom VGG-style
//! configuration built by the same code (small networks for tests and CPU experiments).

use std::fmt;
use std::str::FromStr;

use crate::error::{Error, Result};

/// One entry of a VGG feature configuration: a 3×3 convolution with that many output
/// channels, or a 2×2 max-pool (`M` in torchvision's tables).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CfgItem {
    Conv(usize),
    Pool,
}

const CFG_A: &str = "64,M,128,M,256,256,M,512,512,M,512,512,M";
const CFG_B: &str = "64,64,M,128,128,M,256,256,M,512,512,M,512,512,M";
const CFG_D: &str = "64,64,M,128,128,M,256,256,256,M,512,512,512,M,512,512,512,M";
const CFG_E: &str = "64,64,M,128,128,M,256,256,256,256,M,512,512,512,512,M,512,512,512,512,M";

/// torchvision's eight VGG models.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Arch {
    Vgg11,
    Vgg11Bn,
    Vgg13,
    Vgg13Bn,
    Vgg16,
    Vgg16Bn,
    Vgg19,
    Vgg19Bn,
}

impl Arch {
    pub const ALL: [Arch; 8] = [
        Arch::Vgg11,
        Arch::Vgg11Bn,
        Arch::Vgg13,
        Arch::Vgg13Bn,
        Arch::Vgg16,
        Arch::Vgg16Bn,
        Arch::Vgg19,
        Arch::Vgg19Bn,
    ];

    /// torchvision's function name, e.g. `vgg16_bn`.
    pub fn name(self) -> &'static str {
        match self {
            Arch::Vgg11 => "vgg11",
            Arch::Vgg11Bn => "vgg11_bn",
            Arch::Vgg13 => "vgg13",
            Arch::Vgg13Bn => "vgg13_bn",
            Arch::Vgg16 => "vgg16",
            Arch::Vgg16Bn => "vgg16_bn",
            Arch::Vgg19 => "vgg19",
            Arch::Vgg19Bn => "vgg19_bn",
        }
    }

    /// The paper's configuration letter (A, B, D, E).
    pub fn config_letter(self) -> char {
        match self {
            Arch::Vgg11 | Arch::Vgg11Bn => 'A',
            Arch::Vgg13 | Arch::Vgg13Bn => 'B',
            Arch::Vgg16 | Arch::Vgg16Bn => 'D',
            Arch::Vgg19 | Arch::Vgg19Bn => 'E',
        }
    }

    pub fn batch_norm(self) -> bool {
        matches!(
            self,
            Arch::Vgg11Bn | Arch::Vgg13Bn | Arch::Vgg16Bn | Arch::Vgg19Bn
        )
    }

    /// torchvision's published ImageNet-1k checkpoint (the file name users download) and its
    /// acc@1 / acc@5, from torchvision's model metadata.
    pub fn imagenet_checkpoint(self) -> (&'static str, f64, f64) {
        match self {
            Arch::Vgg11 => ("vgg11-8a719046.pth", 69.020, 88.628),
            Arch::Vgg11Bn => ("vgg11_bn-6002323d.pth", 70.370, 89.810),
            Arch::Vgg13 => ("vgg13-19584684.pth", 69.928, 89.246),
            Arch::Vgg13Bn => ("vgg13_bn-abd245e5.pth", 71.586, 90.374),
            Arch::Vgg16 => ("vgg16-397923af.pth", 71.592, 90.382),
            Arch::Vgg16Bn => ("vgg16_bn-6c64b313.pth", 73.360, 91.516),
            Arch::Vgg19 => ("vgg19-dcbb9e9d.pth", 72.376, 90.876),
            Arch::Vgg19Bn => ("vgg19_bn-c79401a0.pth", 74.218, 91.842),
        }
    }

    /// The feature configuration, as torchvision's `cfgs` table has it.
    pub fn cfg(self) -> Vec<CfgItem> {
        let text = match self.config_letter() {
            'A' => CFG_A,
            'B' => CFG_B,
            'D' => CFG_D,
            _ => CFG_E,
        };
        parse_cfg(text).expect("built-in configs are valid")
    }
}

impl fmt::Display for Arch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Arch {
    type Err = Error;

    fn from_str(name: &str) -> Result<Self> {
        Arch::ALL
            .into_iter()
            .find(|arch| arch.name() == name)
            .ok_or_else(|| unknown_arch(name))
    }
}

fn unknown_arch(name: &str) -> Error {
    let valid: Vec<&str> = Arch::ALL.iter().map(|a| a.name()).collect();
    let closest = valid
        .iter()
        .chain(std::iter::once(&"custom"))
        .map(|v| (strsim::levenshtein(&name.to_lowercase(), v), *v))
        .min()
        .filter(|(distance, _)| *distance <= 3)
        .map(|(_, v)| v.to_string());
    Error::UnknownArch {
        name: name.to_string(),
        valid: valid.join(", "),
        closest,
    }
}

/// Parses a feature configuration such as `32,M,64,M,128,128,M`.
pub fn parse_cfg(text: &str) -> Result<Vec<CfgItem>> {
    let bad = |why: String| Error::BadCfg {
        cfg: text.to_string(),
        why,
    };
    let items = text
        .split(',')
        .map(|item| match item.trim() {
            "M" | "m" => Ok(CfgItem::Pool),
            v => match v.parse::<usize>() {
                Ok(0) => Err(bad("a convolution needs at least 1 channel".into())),
                Ok(c) => Ok(CfgItem::Conv(c)),
                Err(_) => Err(bad(format!(
                    "`{v}` is neither a channel count nor `M` (max-pool)"
                ))),
            },
        })
        .collect::<Result<Vec<_>>>()?;
    if !items.iter().any(|i| matches!(i, CfgItem::Conv(_))) {
        return Err(bad("it needs at least one convolution".into()));
    }
    Ok(items)
}

/// The cfg in `--cfg` syntax (`64,M,128,M`).
pub fn cfg_string(features: &[CfgItem]) -> String {
    let items: Vec<String> = features
        .iter()
        .map(|i| match i {
            CfgItem::Conv(c) => c.to_string(),
            CfgItem::Pool => "M".to_string(),
        })
        .collect();
    items.join(",")
}

/// `features` in JSON (training checkpoints) as its `--cfg` text.
mod cfg_text {
    use serde::{Deserialize, Deserializer, Serializer};

    use super::{CfgItem, cfg_string, parse_cfg};

    pub fn serialize<S: Serializer>(features: &[CfgItem], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&cfg_string(features))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<CfgItem>, D::Error> {
        parse_cfg(&String::deserialize(d)?).map_err(serde::de::Error::custom)
    }
}

/// Everything that determines a VGG network's layers and parameter shapes.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct VggConfig {
    /// `vgg16`, `vgg11_bn`, … or `custom`.
    pub name: String,
    #[serde(with = "cfg_text")]
    pub features: Vec<CfgItem>,
    pub batch_norm: bool,
    pub in_channels: usize,
    pub num_classes: usize,
    pub dropout: f64,
    /// Width of the two hidden classifier layers (4096 in torchvision).
    pub hidden: usize,
    /// Output size of the adaptive average pool (7 in torchvision).
    pub pool: usize,
}

impl VggConfig {
    /// torchvision's model with its defaults (1000 classes, dropout 0.5, RGB input).
    pub fn from_arch(arch: Arch) -> Self {
        VggConfig {
            name: arch.name().to_string(),
            features: arch.cfg(),
            batch_norm: arch.batch_norm(),
            in_channels: 3,
            num_classes: 1000,
            dropout: 0.5,
            hidden: 4096,
            pool: 7,
        }
    }

    /// A VGG-style network from a configuration string, with torchvision's other defaults.
    pub fn custom(cfg: &str, batch_norm: bool) -> Result<Self> {
        Ok(VggConfig {
            name: "custom".to_string(),
            features: parse_cfg(cfg)?,
            batch_norm,
            ..VggConfig::from_arch(Arch::Vgg11)
        })
    }

    /// The named arch this config is exactly, if any.
    pub fn arch(&self) -> Option<Arch> {
        Arch::ALL.into_iter().find(|a| a.name() == self.name)
    }

    /// Checks the numbers a user can set; every constructor path ends here.
    pub fn validate(&self) -> Result<()> {
        let positive = [
            ("num_classes", self.num_classes),
            ("in_channels", self.in_channels),
            ("hidden", self.hidden),
            ("pool", self.pool),
        ];
        for (what, value) in positive {
            if value == 0 {
                return Err(Error::BadConfig(format!("{what} must be at least 1")));
            }
        }
        if !(0.0..1.0).contains(&self.dropout) {
            return Err(Error::BadConfig(format!(
                "dropout must be in [0, 1), got {}",
                self.dropout
            )));
        }
        Ok(())
    }

    pub fn num_pools(&self) -> usize {
        self.features
            .iter()
            .filter(|i| matches!(i, CfgItem::Pool))
            .count()
    }

    /// Channels of the last convolution: what the classifier sees per pooled cell.
    pub fn out_channels(&self) -> usize {
        self.features
            .iter()
            .rev()
            .find_map(|i| match i {
                CfgItem::Conv(c) => Some(*c),
                CfgItem::Pool => None,
            })
            .unwrap_or(self.in_channels)
    }

    /// Smallest height and width that survive every 2×2 max-pool with at least one pixel.
    pub fn min_input_size(&self) -> usize {
        1usize << self.num_pools().min(63)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for arch in Arch::ALL {
            assert_eq!(arch.name().parse::<Arch>().unwrap(), arch);
        }
    }

    #[test]
    fn unknown_arch_suggests_closest() {
        let err = "vgg16bn".parse::<Arch>().unwrap_err().to_string();
        assert!(err.contains("did you mean `vgg16_bn`"), "{err}");
        assert!(err.contains("vgg11, vgg11_bn"), "{err}");
        let err = "resnet50".parse::<Arch>().unwrap_err().to_string();
        assert!(!err.contains("did you mean"), "{err}");
    }

    #[test]
    fn cfg_string_round_trips() {
        for arch in Arch::ALL {
            let config = VggConfig::from_arch(arch);
            assert_eq!(
                parse_cfg(&cfg_string(&config.features)).unwrap(),
                config.features
            );
        }
    }

    #[test]
    fn cfg_parsing() {
        assert_eq!(
            parse_cfg("32,M,64").unwrap(),
            vec![CfgItem::Conv(32), CfgItem::Pool, CfgItem::Conv(64)]
        );
        for bad in ["", "M,M", "32,X", "0,M", "32,,M", "-4"] {
            assert!(parse_cfg(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn vgg_needs_32_pixels() {
        for arch in Arch::ALL {
            assert_eq!(VggConfig::from_arch(arch).min_input_size(), 32);
        }
    }
}
