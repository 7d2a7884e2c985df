//! What a checkpoint holds and which model it fits (`vgg weights FILE`): the facts as
//! data, and their report as text, so that every front end shows the same thing.

use std::fmt;
use std::path::{Path, PathBuf};

use crate::data::preprocess::Preprocess;
use crate::error::Result;
use crate::model::VggConfig;
use crate::model::head::head_string;
use crate::summary::with_commas;
use crate::weights::detect::detect_config;
use crate::weights::load::{LoadReport, check};
use crate::weights::recorded::Int8Calibration;
use crate::weights::{
    Shapes, implied_preprocess, read, recorded_class_names, recorded_int8, recorded_preprocess,
};

/// One tensor of a checkpoint: its key, element type and shape.
#[derive(Debug, Clone)]
pub struct TensorInfo {
    pub key: String,
    pub dtype: String,
    pub dims: Vec<usize>,
}

/// What a checkpoint holds, the network its shapes describe, what it records, and how a
/// strict load into a model went.
#[derive(Debug, Clone)]
pub struct Inspection {
    pub path: PathBuf,
    /// The container, in words (`WeightFormat::describe`).
    pub format: &'static str,
    /// What was changed on the way in (name mapping, nesting).
    pub notes: Vec<String>,
    pub tensors: Vec<TensorInfo>,
    pub parameters: usize,
    /// The network the shapes describe, or why none could be told.
    pub detected: std::result::Result<VggConfig, String>,
    /// The preprocessing the checkpoint records (or, for an ONNX graph of a fixed input
    /// size, implies), or why it cannot be used.
    pub preprocess: std::result::Result<Option<Preprocess>, String>,
    /// Whether that preprocessing is recorded (how the model was trained) or implied.
    pub preprocess_recorded: bool,
    /// The class names the checkpoint records, or why they cannot be used.
    pub classes: std::result::Result<Option<Vec<String>>, String>,
    /// The int8 calibration the checkpoint records, or why it cannot be used.
    pub int8: std::result::Result<Option<Int8Calibration>, String>,
    /// The strict load into the model asked for, else into the detected one (`None` when
    /// there was neither).
    pub load: Option<LoadReport>,
}

impl Inspection {
    /// Reads `path` and checks it against the model `model` picks for its tensors' shapes
    /// (`None`: the network they describe).
    pub fn read(
        path: &Path,
        model: impl FnOnce(&Shapes) -> Result<Option<VggConfig>>,
    ) -> Result<Inspection> {
        let state = read(path)?;
        let shapes = state.shapes();
        let detected = detect_config(&shapes).map_err(|e| e.to_string());
        let model = model(&shapes)?.or_else(|| detected.clone().ok());
        let load = model.map(|config| check(&config, &shapes));
        let tensors = (state.tensors.iter())
            .map(|(key, tensor)| TensorInfo {
                key: key.clone(),
                dtype: format!("{:?}", tensor.dtype()).to_lowercase(),
                dims: tensor.dims().to_vec(),
            })
            .collect();
        let classes = recorded_classes(path, detected.as_ref().ok());
        Ok(Inspection {
            path: path.to_path_buf(),
            format: state.format.describe(),
            notes: state.notes.clone(),
            tensors,
            parameters: state.num_params(),
            detected,
            preprocess: implied_preprocess(path).map_err(|e| e.to_string()),
            preprocess_recorded: recorded_preprocess(path).is_ok_and(|p| p.is_some()),
            classes,
            int8: recorded_int8(path).map_err(|e| e.to_string()),
            load,
        })
    }

    /// Whether the checkpoint loads strictly into the model checked (true when none was).
    pub fn fits(&self) -> bool {
        self.load.as_ref().is_none_or(LoadReport::is_exact)
    }

    fn write_detected(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let c = match &self.detected {
            Ok(c) => c,
            Err(why) => return writeln!(f, "detected: nothing ({why})"),
        };
        let cfg = match c.name() {
            "custom" => format!(" {}", c.feature_flags()),
            _ => String::new(),
        };
        writeln!(
            f,
            "detected: {}{cfg} (num_classes {}, in_channels {}, pool {}, head {})",
            c.name(),
            c.num_classes(),
            c.in_channels(),
            c.pool(),
            head_string(c.head()),
        )
    }

    fn write_recorded(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.preprocess {
            Ok(Some(p)) => {
                let three = |v: [f32; 3]| v.map(|x| x.to_string()).join(",");
                let source = match self.preprocess_recorded {
                    true => "trained with",
                    false => "ImageNet's at the graph's fixed input size",
                };
                writeln!(
                    f,
                    "preprocessing ({source}; the default of classify, evaluate, features \
                     and dissect): --resize {} --crop {} --mean {} --std {}",
                    p.resize,
                    p.crop,
                    three(p.mean),
                    three(p.std)
                )?;
            }
            Ok(None) => {}
            Err(why) => writeln!(f, "preprocessing: unusable ({why})")?,
        }
        match &self.classes {
            Ok(Some(names)) => writeln!(f, "class names: {}", listed(names))?,
            Ok(None) => {}
            Err(why) => writeln!(f, "class names: unusable ({why})")?,
        }
        self.write_int8(f)
    }

    fn write_int8(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.int8 {
            Ok(Some(calibration)) => {
                let int8: Vec<&str> = (calibration.layers.iter())
                    .filter(|l| l.int8)
                    .map(|l| l.path.as_str())
                    .collect();
                writeln!(
                    f,
                    "int8 calibration (`--precision int8`; `vgg quantize` wrote it): {} of {} \
                     layers in int8, calibrated on {} images at {}x{}: {}",
                    int8.len(),
                    calibration.layers.len(),
                    calibration.images,
                    calibration.size[0],
                    calibration.size[1],
                    int8.join(", ")
                )
            }
            Ok(None) => Ok(()),
            Err(why) => writeln!(f, "int8 calibration: unusable ({why})"),
        }
    }
}

/// The class names a checkpoint records, refused when they do not name every output of the
/// network its shapes describe.
fn recorded_classes(
    path: &Path,
    detected: Option<&VggConfig>,
) -> std::result::Result<Option<Vec<String>>, String> {
    let names = recorded_class_names(path).map_err(|e| e.to_string())?;
    match (names, detected) {
        (Some(names), Some(c)) if names.len() != c.num_classes() => Err(format!(
            "{} names for the {} outputs of its last layer",
            names.len(),
            c.num_classes()
        )),
        (names, _) => Ok(names),
    }
}

/// `names` counted, the first few quoted: `10: "zero", "one", … "nine"`.
fn listed(names: &[String]) -> String {
    const SHOWN: usize = 6;
    let quoted: Vec<String> = names.iter().map(|n| format!("{n:?}")).collect();
    match quoted.len() {
        n if n <= SHOWN => format!("{n}: {}", quoted.join(", ")),
        n => format!(
            "{n}: {}, … {}",
            quoted[..SHOWN - 1].join(", "),
            quoted[n - 1]
        ),
    }
}

impl fmt::Display for Inspection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let count = self.tensors.len();
        writeln!(
            f,
            "{}: {}, {count} tensors",
            self.path.display(),
            self.format
        )?;
        for note in &self.notes {
            writeln!(f, "note: {note}")?;
        }
        let width = self.tensors.iter().map(|t| t.key.len()).max().unwrap_or(0);
        for TensorInfo { key, dtype, dims } in &self.tensors {
            writeln!(f, "  {key:<width$}  {dtype:<4}  {dims:?}")?;
        }
        writeln!(f, "parameters: {}", with_commas(self.parameters as i128))?;
        self.write_detected(f)?;
        self.write_recorded(f)?;
        match &self.load {
            None => Ok(()),
            Some(report) if report.is_exact() => writeln!(
                f,
                "matches {}: yes, every key and shape fits (strict load)",
                report.model
            ),
            Some(report) => writeln!(f, "matches {}: no\n{report}", report.model),
        }
    }
}
