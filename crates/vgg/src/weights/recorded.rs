//! What the files we write record beside their tensors, under the same keys in a
//! safetensors header's metadata and an ONNX model's `metadata_props`: the network's config
//! (so a head with no torchvision counterpart reads back exactly), the preprocessing it
//! expects and its class names. Converting a file carries them along.

use crate::data::preprocess::Preprocess;
use crate::model::VggConfig;

pub const CONFIG_KEY: &str = "vgg.config";
pub const PREPROCESS_KEY: &str = "vgg.preprocess";
pub const CLASSES_KEY: &str = "vgg.classes";

#[derive(Debug, Clone, Default, PartialEq)]
pub struct Recorded {
    pub config: Option<VggConfig>,
    pub preprocess: Option<Preprocess>,
    pub classes: Option<Vec<String>>,
}

impl Recorded {
    /// The entries to write, as JSON text.
    pub fn to_metadata(&self) -> Vec<(String, String)> {
        let json = |value: serde_json::Result<String>| value.expect("plain data serialises");
        let config = (self.config.as_ref()).map(|c| (CONFIG_KEY, json(serde_json::to_string(c))));
        let preprocess =
            (self.preprocess.as_ref()).map(|p| (PREPROCESS_KEY, json(serde_json::to_string(p))));
        let classes =
            (self.classes.as_ref()).map(|c| (CLASSES_KEY, json(serde_json::to_string(c))));
        [config, preprocess, classes]
            .into_iter()
            .flatten()
            .map(|(key, value)| (key.to_string(), value))
            .collect()
    }

    /// What a file's metadata (looked up with `get`) records; entries that do not parse, or
    /// preprocessing that is not valid, are left out.
    pub fn from_metadata(get: impl Fn(&str) -> Option<String>) -> Self {
        Recorded {
            config: get(CONFIG_KEY).and_then(|c| serde_json::from_str(&c).ok()),
            preprocess: get(PREPROCESS_KEY)
                .and_then(|p| serde_json::from_str::<Preprocess>(&p).ok())
                .filter(|p| p.validate().is_ok()),
            classes: get(CLASSES_KEY).and_then(|c| serde_json::from_str(&c).ok()),
        }
    }
}
