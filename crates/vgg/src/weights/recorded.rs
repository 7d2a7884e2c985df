//! What the files we write record beside their tensors, under the same keys in a
//! safetensors header's metadata and an ONNX model's `metadata_props`: the network's config
//! (so a head with no torchvision counterpart reads back exactly), the preprocessing it
//! expects, its class names and its int8 calibration. Converting a file carries them along.

use std::path::Path;

use crate::data::preprocess::Preprocess;
use crate::error::{Error, Result};
use crate::model::VggConfig;
use crate::model::head::head_string;
use crate::weights::Shapes;

pub const CONFIG_KEY: &str = "vgg.config";
pub const PREPROCESS_KEY: &str = "vgg.preprocess";
pub const CLASSES_KEY: &str = "vgg.classes";
pub const INT8_KEY: &str = "vgg.int8";

#[derive(Debug, Clone, Default, PartialEq)]
pub struct Recorded {
    pub config: Option<VggConfig>,
    pub preprocess: Option<Preprocess>,
    pub classes: Option<Vec<String>>,
    pub int8: Option<Int8Calibration>,
}

/// What `vgg quantize` measured: every convolution and linear layer, its input range over
/// the calibration images, its error in int8 and whether it computes in int8. The weights
/// stay f32 beside it (the int8 ones follow from them, per output channel, at load).
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Int8Calibration {
    /// Calibration images, and the size they were seen at (height, width).
    pub images: usize,
    pub size: [usize; 2],
    pub layers: Vec<CalibratedLayer>,
}

/// One layer of an [`Int8Calibration`].
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct CalibratedLayer {
    /// Module path, as in the state dict (`features.3`, `classifier.0`).
    pub path: String,
    pub input_min: f32,
    pub input_max: f32,
    /// ‖int8 − f32‖ / ‖f32‖ of the layer's outputs, fed the f32 input (absent when the
    /// layer cannot compute in int8).
    pub relative_rms: Option<f64>,
    /// Largest |int8 − f32| over the largest |f32| output.
    pub max_over_range: Option<f64>,
    pub int8: bool,
    /// Why it computes in f32 (`None` when it computes in int8).
    pub kept_because: Option<String>,
}

impl Int8Calibration {
    /// The input range of the layer at `path` if it computes in int8.
    pub fn int8_range(&self, path: &str) -> Option<f32> {
        (self.layers.iter())
            .find(|l| l.path == path && l.int8)
            .map(|l| l.input_max)
    }

    /// Refuses ranges no layer could use (from a hand-edited or damaged file): an int8
    /// layer's input maximum is 0 (it never saw a positive input) or a finite value whose
    /// u8 step, `max / 255`, is a normal f32, so that inputs divide by it without
    /// overflowing.
    pub fn validate(&self) -> std::result::Result<(), String> {
        let usable = |max: f32| max == 0.0 || (max.is_finite() && max / 255.0 >= f32::MIN_POSITIVE);
        match (self.layers.iter()).find(|l| l.int8 && !usable(l.input_max)) {
            Some(l) => Err(format!(
                "layer {} has input maximum {:?}, expected 0 or a finite value from {:?}",
                l.path,
                l.input_max,
                255.0 * f32::MIN_POSITIVE
            )),
            None => Ok(()),
        }
    }

    /// Refuses a calibration that does not record exactly the layers at `paths` (every
    /// convolution and linear layer of a model), each once.
    pub fn check_layers<'a>(
        &self,
        paths: impl Iterator<Item = &'a str>,
    ) -> std::result::Result<(), String> {
        let paths: Vec<&str> = paths.collect();
        let mut seen = std::collections::HashSet::new();
        for layer in &self.layers {
            if !paths.contains(&layer.path.as_str()) {
                return Err(format!(
                    "it records layer {}, which the model does not have",
                    layer.path
                ));
            }
            if !seen.insert(layer.path.as_str()) {
                return Err(format!("it records layer {} twice", layer.path));
            }
        }
        match paths.iter().find(|p| !seen.contains(*p)) {
            Some(missing) => Err(format!("it records no range for layer {missing}")),
            None => Ok(()),
        }
    }
}

impl Recorded {
    /// What this says beyond what tensors of `shapes` show, in words: all a file of tensors
    /// alone (a `.pth`) leaves out. A config counts when its head is not the one the shapes
    /// imply (a softmax, a batch norm, other dropout).
    pub fn beyond(&self, shapes: &Shapes) -> Vec<String> {
        let implied = crate::weights::detect::detect_config(&Shapes {
            config: None,
            ..shapes.clone()
        })
        .ok();
        let head = (self.config.as_ref())
            .filter(|c| implied.as_ref().is_none_or(|d| d.head() != c.head()))
            .map(|c| format!("the head `{}`", head_string(c.head())));
        let named = [
            (self.preprocess.is_some(), "the preprocessing"),
            (self.classes.is_some(), "the class names"),
            (self.int8.is_some(), "the int8 calibration"),
        ];
        let named = named.into_iter().filter(|(kept, _)| *kept);
        head.into_iter()
            .chain(named.map(|(_, what)| what.to_string()))
            .collect()
    }

    /// The entries to write, as JSON text.
    pub fn to_metadata(&self) -> Vec<(String, String)> {
        let json = |value: serde_json::Result<String>| value.expect("plain data serialises");
        let config = (self.config.as_ref()).map(|c| (CONFIG_KEY, json(serde_json::to_string(c))));
        let preprocess =
            (self.preprocess.as_ref()).map(|p| (PREPROCESS_KEY, json(serde_json::to_string(p))));
        let classes =
            (self.classes.as_ref()).map(|c| (CLASSES_KEY, json(serde_json::to_string(c))));
        let int8 = (self.int8.as_ref()).map(|c| (INT8_KEY, json(serde_json::to_string(c))));
        [config, preprocess, classes, int8]
            .into_iter()
            .flatten()
            .map(|(key, value)| (key.to_string(), value))
            .collect()
    }
}

/// Reads one entry of a file's metadata (looked up with `get`) each: `None` when the file
/// does not record it, an error naming the file and the key when it is there but does not
/// parse or holds values no model could use. Left out in silence, a damaged entry would turn
/// the file's class names into `class N` or its preprocessing into ImageNet's. Each entry is
/// read on its own, so a damaged one only stops what uses it (a damaged int8 calibration
/// leaves f32 inference alone).
pub struct RecordedEntries<'a, G> {
    pub path: &'a Path,
    pub get: G,
}

impl<G: Fn(&str) -> Option<String>> RecordedEntries<'_, G> {
    pub fn config(&self) -> Result<Option<VggConfig>> {
        self.entry(CONFIG_KEY, "config", |_: &VggConfig| Ok(()))
    }

    pub fn preprocess(&self) -> Result<Option<Preprocess>> {
        let usable = |p: &Preprocess| p.validate().map_err(|e| e.to_string());
        self.entry(PREPROCESS_KEY, "preprocessing", usable)
    }

    pub fn classes(&self) -> Result<Option<Vec<String>>> {
        self.entry(CLASSES_KEY, "class names", |_: &Vec<String>| Ok(()))
    }

    pub fn int8(&self) -> Result<Option<Int8Calibration>> {
        self.entry(INT8_KEY, "int8 calibration", Int8Calibration::validate)
    }

    /// The entry at `key` (`what` in messages), parsed and then checked by `usable`.
    fn entry<T: serde::de::DeserializeOwned>(
        &self,
        key: &str,
        what: &str,
        usable: impl FnOnce(&T) -> std::result::Result<(), String>,
    ) -> Result<Option<T>> {
        let Some(text) = (self.get)(key) else {
            return Ok(None);
        };
        let bad = |why: String| Error::BadWeights {
            path: self.path.display().to_string(),
            why: format!("its {what} (metadata `{key}`) {why}"),
        };
        let value = serde_json::from_str(&text).map_err(|e| bad(format!("does not parse: {e}")))?;
        usable(&value).map_err(|e| bad(format!("is not usable: {e}")))?;
        Ok(Some(value))
    }
}
