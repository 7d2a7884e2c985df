//! Which VGG network to build: torchvision's eight named models, or a custom VGG-style
//! configuration built by the same code (small networks for tests and CPU experiments).

use std::fmt;
use std::str::FromStr;

use crate::error::{Error, Result};
use crate::model::head::{
    HeadItem, as_torchvision, check_head, head_string, parse_head, torchvision_head,
};

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
    check_features(&items).map_err(|e| match e {
        Error::BadConfig(why) => bad(why),
        other => other,
    })?;
    Ok(items)
}

/// A feature list has at least one convolution, no empty ones, and a bounded length.
fn check_features(features: &[CfgItem]) -> Result<()> {
    if !features.iter().any(|i| matches!(i, CfgItem::Conv(_))) {
        return Err(Error::BadConfig(
            "the features need at least one convolution".into(),
        ));
    }
    if features.len() > MAX_FEATURES {
        return Err(Error::BadConfig(format!(
            "the features have {} entries; at most {MAX_FEATURES} are accepted",
            features.len()
        )));
    }
    let pools = features
        .iter()
        .filter(|i| matches!(i, CfgItem::Pool))
        .count();
    if pools > MAX_POOLS {
        return Err(Error::BadConfig(format!(
            "the features have {pools} max-pools; at most {MAX_POOLS} are accepted (each \
             halves the input, which would need 2^{pools} pixels a side)"
        )));
    }
    match features.iter().find_map(|i| match i {
        CfgItem::Conv(c) if !(1..=MAX_WIDTH).contains(c) => Some(*c),
        _ => None,
    }) {
        Some(c) => Err(Error::BadConfig(format!(
            "a convolution needs 1..={MAX_WIDTH} channels, got {c}"
        ))),
        None => Ok(()),
    }
}

/// The pool size P for which a classifier taking `features` inputs sees a `channels × P × P`
/// map, if there is one.
pub fn pool_side(features: usize, channels: usize) -> Option<usize> {
    if channels == 0 || !features.is_multiple_of(channels) {
        return None;
    }
    let side = (features / channels).isqrt();
    (side > 0 && side * side == features / channels).then_some(side)
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

/// Everything that determines a VGG network's layers and parameter shapes. Built only
/// through constructors that validate it ([`VggConfig::from_arch`], [`VggConfig::custom`],
/// [`VggConfig::new`], [`VggConfig::with_overrides`], deserialisation), so every config a
/// library call sees describes a network that can be built.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(try_from = "StoredFields", into = "Fields")]
pub struct VggConfig(Fields);

/// [`VggConfig`]'s contents, as they are stored (the head in `--head` syntax).
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
struct Fields {
    name: String,
    #[serde(with = "cfg_text")]
    features: Vec<CfgItem>,
    batch_norm: bool,
    in_channels: usize,
    pool: usize,
    #[serde(serialize_with = "head_text")]
    head: Vec<HeadItem>,
}

fn head_text<S: serde::Serializer>(
    head: &[HeadItem],
    s: S,
) -> std::result::Result<S::Ok, S::Error> {
    s.serialize_str(&head_string(head))
}

/// What a stored config may hold: the head as text, or (checkpoints written before heads
/// were configurable) torchvision's head by its width, dropout and class count.
#[derive(serde::Deserialize)]
struct StoredFields {
    name: String,
    #[serde(with = "cfg_text")]
    features: Vec<CfgItem>,
    batch_norm: bool,
    in_channels: usize,
    pool: usize,
    head: Option<String>,
    num_classes: Option<usize>,
    dropout: Option<f64>,
    hidden: Option<usize>,
}

impl TryFrom<StoredFields> for VggConfig {
    type Error = Error;

    fn try_from(stored: StoredFields) -> Result<Self> {
        let head = match stored.head {
            Some(text) => parse_head(&text)?,
            None => torchvision_head(
                stored.hidden.unwrap_or(4096),
                stored.dropout.unwrap_or(0.5),
                stored.num_classes.unwrap_or(1000),
            ),
        };
        let config = VggConfig(Fields {
            name: stored.name,
            features: stored.features,
            batch_norm: stored.batch_norm,
            in_channels: stored.in_channels,
            pool: stored.pool,
            head,
        });
        config.validate()?;
        Ok(config)
    }
}

impl From<VggConfig> for Fields {
    fn from(config: VggConfig) -> Fields {
        config.0
    }
}

/// Changes to a config's input and head; `None` keeps the config's own value. A new `head`
/// applies first; `hidden`, `dropout` and `num_classes` then change its items.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ConfigOverrides {
    pub in_channels: Option<usize>,
    /// A whole new classifier head.
    pub head: Option<Vec<HeadItem>>,
    /// Width of the last Linear.
    pub num_classes: Option<usize>,
    /// Probability of every dropout in the head.
    pub dropout: Option<f64>,
    /// Width of every Linear but the last (torchvision's two hidden layers).
    pub hidden: Option<usize>,
    /// Output size of the adaptive average pool.
    pub pool: Option<usize>,
}

impl ConfigOverrides {
    /// `head` with `hidden`, `dropout` and `num_classes` applied. A change that would not
    /// show (a head with no dropout or no hidden Linear) and a change to a head given in
    /// the same overrides (two values for one layer) are errors, not silently dropped.
    fn apply_to_head(&self, head: &[HeadItem]) -> Result<Vec<HeadItem>> {
        let last_linear = head.iter().rposition(|i| matches!(i, HeadItem::Linear(_)));
        let mut changed = head.to_vec();
        let (mut hidden_layers, mut dropouts) = (0, 0);
        for (index, item) in changed.iter_mut().enumerate() {
            match item {
                HeadItem::Linear(n) if Some(index) == last_linear => {
                    *n = self.num_classes.unwrap_or(*n);
                }
                HeadItem::Linear(n) => {
                    hidden_layers += 1;
                    *n = self.hidden.unwrap_or(*n);
                }
                HeadItem::Dropout(p) => {
                    dropouts += 1;
                    *p = self.dropout.unwrap_or(*p);
                }
                _ => {}
            }
        }
        let text = crate::model::head::head_string(head);
        let absent = |what: &str, kind: &str| {
            Err(Error::BadConfig(format!(
                "{what} changes the head's {kind}, and the head `{text}` has none"
            )))
        };
        if self.hidden.is_some() && hidden_layers == 0 {
            return absent("hidden", "hidden Linear layers");
        }
        if self.dropout.is_some() && dropouts == 0 {
            return absent("dropout", "dropout layers");
        }
        if self.head.is_some() && changed != head {
            return Err(Error::BadConfig(format!(
                "the head `{text}` and hidden/dropout/num_classes disagree (together they make \
                 `{}`); write the widths and dropout into the head",
                crate::model::head::head_string(&changed)
            )));
        }
        Ok(changed)
    }
}

/// Largest channel count, class count, hidden width or pool size accepted: far beyond any
/// real VGG, small enough that no single shape overflows (the parameter count as a whole is
/// checked too).
pub const MAX_WIDTH: usize = 1 << 20;
/// Most entries in a feature config.
pub const MAX_FEATURES: usize = 1 << 10;
/// Most max-pools in a feature config: the input then needs 2^30 pixels a side already.
pub const MAX_POOLS: usize = 30;

impl VggConfig {
    /// torchvision's model with its defaults (1000 classes, dropout 0.5, RGB input).
    pub fn from_arch(arch: Arch) -> Self {
        VggConfig(Fields {
            name: arch.name().to_string(),
            features: arch.cfg(),
            batch_norm: arch.batch_norm(),
            in_channels: 3,
            pool: 7,
            head: torchvision_head(4096, 0.5, 1000),
        })
    }

    /// A VGG-style network from a configuration string, with torchvision's other defaults.
    pub fn custom(cfg: &str, batch_norm: bool) -> Result<Self> {
        Self::new("custom", parse_cfg(cfg)?, batch_norm)
    }

    /// A network of these features with torchvision's head and input; named `name`
    /// (an arch's name only when the features are that arch's).
    pub fn new(name: &str, features: Vec<CfgItem>, batch_norm: bool) -> Result<Self> {
        let config = VggConfig(Fields {
            name: name.to_string(),
            features,
            batch_norm,
            ..VggConfig::from_arch(Arch::Vgg11).0
        });
        config.validate()?;
        Ok(config)
    }

    /// The config of a network with these features: a torchvision arch's, keeping its name,
    /// when they are exactly that arch's; otherwise `custom`.
    pub fn from_features(features: Vec<CfgItem>, batch_norm: bool) -> Result<Self> {
        let named = Arch::ALL
            .into_iter()
            .find(|a| a.cfg() == features && a.batch_norm() == batch_norm);
        match named {
            Some(arch) => Ok(Self::from_arch(arch)),
            None => Self::new("custom", features, batch_norm),
        }
    }

    /// This config with `overrides` applied, checked.
    pub fn with_overrides(&self, overrides: &ConfigOverrides) -> Result<Self> {
        for (what, value) in [
            ("num_classes", overrides.num_classes),
            ("hidden", overrides.hidden),
        ] {
            match value {
                Some(0) => return Err(Error::BadConfig(format!("{what} must be at least 1"))),
                Some(v) if v > MAX_WIDTH => {
                    return Err(Error::BadConfig(format!(
                        "{what} must be at most {MAX_WIDTH}, got {v}"
                    )));
                }
                _ => {}
            }
        }
        let f = &self.0;
        let head = overrides.apply_to_head(overrides.head.as_deref().unwrap_or(&f.head))?;
        // torchvision's arch functions build torchvision's head; any other makes a custom net.
        let name = match as_torchvision(&head) {
            None if self.arch().is_some() => "custom".to_string(),
            _ => f.name.clone(),
        };
        let config = VggConfig(Fields {
            name,
            in_channels: overrides.in_channels.unwrap_or(f.in_channels),
            pool: overrides.pool.unwrap_or(f.pool),
            head,
            ..f.clone()
        });
        config.validate()?;
        Ok(config)
    }

    /// This config for `num_classes` outputs.
    pub fn with_num_classes(&self, num_classes: usize) -> Result<Self> {
        self.with_overrides(&ConfigOverrides {
            num_classes: Some(num_classes),
            ..ConfigOverrides::default()
        })
    }

    /// This config for input images of `in_channels` channels.
    pub fn with_in_channels(&self, in_channels: usize) -> Result<Self> {
        self.with_overrides(&ConfigOverrides {
            in_channels: Some(in_channels),
            ..ConfigOverrides::default()
        })
    }

    /// `vgg16`, `vgg11_bn`, … or `custom`.
    pub fn name(&self) -> &str {
        &self.0.name
    }

    pub fn features(&self) -> &[CfgItem] {
        &self.0.features
    }

    pub fn batch_norm(&self) -> bool {
        self.0.batch_norm
    }

    pub fn in_channels(&self) -> usize {
        self.0.in_channels
    }

    /// The width of the head's last Linear.
    pub fn num_classes(&self) -> usize {
        self.0
            .head
            .iter()
            .rev()
            .find_map(|i| match i {
                HeadItem::Linear(n) => Some(*n),
                _ => None,
            })
            .expect("a validated head has a Linear")
    }

    /// The classifier head, item by item.
    pub fn head(&self) -> &[HeadItem] {
        &self.0.head
    }

    /// Whether the network outputs class probabilities (its head ends with a softmax)
    /// rather than logits.
    pub fn outputs_probabilities(&self) -> bool {
        self.0.head.last() == Some(&HeadItem::Softmax)
    }

    /// Width of the two hidden classifier layers (4096 in torchvision); `None` when the
    /// head is not torchvision's shape.
    pub fn hidden(&self) -> Option<usize> {
        as_torchvision(&self.0.head).map(|(hidden, _)| hidden)
    }

    /// Dropout probability of torchvision's two dropout layers; `None` when the head is
    /// not torchvision's shape.
    pub fn dropout(&self) -> Option<f64> {
        as_torchvision(&self.0.head).map(|(_, p)| p)
    }

    /// The command-line flags that give these features: `--cfg 64,M,128` (and
    /// `--batch-norm`).
    pub fn feature_flags(&self) -> String {
        let norm = if self.batch_norm() {
            " --batch-norm"
        } else {
            ""
        };
        format!("--cfg {}{norm}", cfg_string(self.features()))
    }

    /// The command-line flags that give this head: `--hidden H --num-classes K` (and
    /// `--dropout P` unless 0.5) for torchvision's shape, `--head ITEMS` for any other.
    pub fn head_flags(&self) -> String {
        match as_torchvision(&self.0.head) {
            Some((hidden, p)) => {
                let dropout = if p == 0.5 {
                    String::new()
                } else {
                    format!(" --dropout {p}")
                };
                let classes = self.num_classes();
                format!("--hidden {hidden}{dropout} --num-classes {classes}")
            }
            None => format!("--head {}", head_string(&self.0.head)),
        }
    }

    /// Output size of the adaptive average pool (7 in torchvision).
    pub fn pool(&self) -> usize {
        self.0.pool
    }

    /// The named arch this config is exactly, if any.
    pub fn arch(&self) -> Option<Arch> {
        Arch::ALL.into_iter().find(|a| a.name() == self.0.name)
    }

    /// Checks everything a user or a file can set; every constructor ends here.
    fn validate(&self) -> Result<()> {
        let sizes = [("in_channels", self.0.in_channels), ("pool", self.0.pool)];
        for (what, value) in sizes {
            if value == 0 {
                return Err(Error::BadConfig(format!("{what} must be at least 1")));
            }
            if value > MAX_WIDTH {
                return Err(Error::BadConfig(format!(
                    "{what} must be at most {MAX_WIDTH}, got {value}"
                )));
            }
        }
        check_head(&self.0.head, MAX_WIDTH, MAX_FEATURES)?;
        check_features(&self.0.features)?;
        if crate::model::footprint::weight_bytes(self).is_none() {
            return Err(Error::BadConfig(format!(
                "{} with head {} and pool {} has more parameters than 64-bit sizes can count",
                self.name(),
                head_string(&self.0.head),
                self.0.pool
            )));
        }
        Ok(())
    }

    pub fn num_pools(&self) -> usize {
        self.0
            .features
            .iter()
            .filter(|i| matches!(i, CfgItem::Pool))
            .count()
    }

    /// Channels of the last convolution: what the classifier sees per pooled cell.
    pub fn out_channels(&self) -> usize {
        self.0
            .features
            .iter()
            .rev()
            .find_map(|i| match i {
                CfgItem::Conv(c) => Some(*c),
                CfgItem::Pool => None,
            })
            .unwrap_or(self.0.in_channels)
    }

    /// Smallest height and width that survive every 2×2 max-pool with at least one pixel.
    pub fn min_input_size(&self) -> usize {
        1usize << self.num_pools().min(63)
    }

    /// The input size whose feature map is exactly `pool×pool`: the crop the network is
    /// designed for (224 for torchvision's VGGs), the size of the paper's multi-crop crops,
    /// and the smallest input of the dense form.
    pub fn native_input_size(&self) -> usize {
        self.pool().saturating_mul(self.min_input_size())
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
                parse_cfg(&cfg_string(config.features())).unwrap(),
                config.features()
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

    /// No constructor, override or deserialisation yields a config that cannot be built.
    #[test]
    fn invalid_configs_cannot_be_made() {
        let vgg11 = VggConfig::from_arch(Arch::Vgg11);
        assert!(VggConfig::new("custom", vec![], false).is_err());
        assert!(VggConfig::new("custom", vec![CfgItem::Pool], false).is_err());
        assert!(VggConfig::new("custom", vec![CfgItem::Conv(0)], false).is_err());
        assert!(VggConfig::new("custom", vec![CfgItem::Conv(MAX_WIDTH + 1)], false).is_err());
        for overrides in [
            ConfigOverrides {
                num_classes: Some(0),
                ..Default::default()
            },
            ConfigOverrides {
                in_channels: Some(0),
                ..Default::default()
            },
            ConfigOverrides {
                hidden: Some(MAX_WIDTH + 1),
                ..Default::default()
            },
            ConfigOverrides {
                pool: Some(0),
                ..Default::default()
            },
            ConfigOverrides {
                dropout: Some(1.0),
                ..Default::default()
            },
            ConfigOverrides {
                dropout: Some(f64::NAN),
                ..Default::default()
            },
        ] {
            assert!(vgg11.with_overrides(&overrides).is_err(), "{overrides:?}");
        }
        let json = serde_json::to_value(&vgg11).unwrap();
        assert_eq!(json["features"], "64,M,128,M,256,256,M,512,512,M,512,512,M");
        let back: VggConfig = serde_json::from_value(json.clone()).unwrap();
        assert_eq!(back, vgg11);
        assert_eq!(
            json["head"],
            "4096,relu,dropout=0.5,4096,relu,dropout=0.5,1000"
        );
        let mut bad = json.clone();
        bad["head"] = "0".into();
        let err = serde_json::from_value::<VggConfig>(bad)
            .unwrap_err()
            .to_string();
        assert!(err.contains("a Linear needs 1..="), "{err}");
        // Checkpoints from before configurable heads stored torchvision's head by size.
        let mut old = json;
        old.as_object_mut().unwrap().remove("head");
        old["hidden"] = 256.into();
        old["num_classes"] = 10.into();
        let back: VggConfig = serde_json::from_value(old).unwrap();
        assert_eq!(back.head(), torchvision_head(256, 0.5, 10));
    }

    #[test]
    fn overrides_that_would_not_show_or_contradict_the_head_are_errors() {
        let head = |text: &str| Some(crate::model::head::parse_head(text).unwrap());
        let base = VggConfig::from_arch(Arch::Vgg11);
        let refused = |overrides: ConfigOverrides, expected: &str| {
            let err = base.with_overrides(&overrides).unwrap_err().to_string();
            assert!(err.contains(expected), "{overrides:?}: {err}");
        };
        refused(
            ConfigOverrides {
                head: head("8,4"),
                hidden: Some(16),
                ..Default::default()
            },
            "the head `8,4` and hidden/dropout/num_classes disagree (together they make `16,4`)",
        );
        refused(
            ConfigOverrides {
                head: head("8,relu,4"),
                dropout: Some(0.3),
                ..Default::default()
            },
            "dropout changes the head's dropout layers, and the head `8,relu,4` has none",
        );
        refused(
            ConfigOverrides {
                head: head("4"),
                hidden: Some(8),
                ..Default::default()
            },
            "hidden changes the head's hidden Linear layers",
        );
        // Values that agree with the head, and changes to the config's own head, are fine.
        let agreeing = ConfigOverrides {
            head: head("16,relu,bn,3,softmax"),
            hidden: Some(16),
            num_classes: Some(3),
            ..Default::default()
        };
        assert!(base.with_overrides(&agreeing).is_ok());
        let own = ConfigOverrides {
            hidden: Some(16),
            dropout: Some(0.1),
            num_classes: Some(3),
            ..Default::default()
        };
        assert_eq!(
            base.with_overrides(&own).unwrap().head(),
            torchvision_head(16, 0.1, 3)
        );
    }

    #[test]
    fn too_many_max_pools_are_refused() {
        let cfg = |pools: usize| format!("8{}", ",M".repeat(pools));
        assert!(VggConfig::custom(&cfg(MAX_POOLS), false).is_ok());
        let err = VggConfig::custom(&cfg(64), false).unwrap_err().to_string();
        assert!(
            err.contains("the features have 64 max-pools; at most 30"),
            "{err}"
        );
    }

    #[test]
    fn vgg_needs_32_pixels() {
        for arch in Arch::ALL {
            assert_eq!(VggConfig::from_arch(arch).min_input_size(), 32);
        }
    }
}
