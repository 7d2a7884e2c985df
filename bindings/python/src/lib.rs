//! `vgg._vgg`: the Rust half of the `vgg` Python package. Every function here converts its
//! arguments, releases the GIL, calls the library and converts the result back; the pure
//! Python package (`python/vgg`) adds the torchvision-shaped names and notebook display.

mod arrays;
mod errors;
mod model;

use std::path::PathBuf;

use numpy::{PyReadonlyArray3, PyUntypedArrayMethods};
use pyo3::exceptions::{PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyByteArray, PyBytes, PyDict, PyList, PyString, PyTuple};
use vgg::data::RgbImage;
use vgg::data::preprocess::Preprocess;
use vgg::model::config::parse_cfg;
use vgg::model::layers::{Container, Form};
use vgg::summary::{Channels, Style, Summary, compare, render};
use vgg::{Arch, VggConfig};

use crate::errors::{PyResult, WeightsError, check};
use crate::model::Model;

/// The config a summary or diagram describes: a `Model`, an arch name, or a dict of
/// `vgg.models.custom`'s arguments (`cfg` as a list of ints and "M").
fn config_from(source: &Bound<'_, PyAny>) -> PyResult<VggConfig> {
    if let Ok(model) = source.cast::<Model>() {
        return Ok(model.get().config());
    }
    if let Ok(name) = source.extract::<String>() {
        return check(name.parse::<Arch>().map(VggConfig::from_arch));
    }
    if let Ok(dict) = source.cast::<PyDict>() {
        refuse_unknown_keys(dict)?;
    }
    let get = |key: &str| -> PyResult<Option<Bound<'_, PyAny>>> {
        Ok(source.get_item(key).ok().filter(|v| !v.is_none()))
    };
    let cfg = get("cfg")?.ok_or_else(|| {
        PyValueError::new_err("expected a vgg Model, an arch name or a dict with a `cfg` list")
    })?;
    let cfg = items_text(&cfg)?;
    let batch_norm = get("batch_norm")?.map_or(Ok(false), |v| v.extract())?;
    let size =
        |key: &str| -> PyResult<Option<usize>> { get(key)?.map(|v| v.extract()).transpose() };
    let head = match get("head")? {
        None => None,
        Some(head) => Some(check(vgg::model::head::parse_head(&items_text(&head)?))?),
    };
    let overrides = vgg::ConfigOverrides {
        head,
        in_channels: size("in_channels")?,
        num_classes: size("num_classes")?,
        dropout: get("dropout")?.map(|v| v.extract()).transpose()?,
        hidden: size("hidden")?,
        pool: size("pool")?,
    };
    // A torchvision arch's layout keeps its name.
    let features = check(parse_cfg(&cfg))?;
    let base = check(VggConfig::from_features(features, batch_norm))?;
    check(base.with_overrides(&overrides))
}

/// The arguments of `vgg.models.custom` that a config dict may hold.
const CONFIG_KEYS: [&str; 8] = [
    "cfg",
    "batch_norm",
    "head",
    "in_channels",
    "num_classes",
    "dropout",
    "hidden",
    "pool",
];

/// Refuses a config dict with a key no config has (a misspelt `num_clases` would otherwise
/// leave the default in place without a word).
fn refuse_unknown_keys(dict: &Bound<'_, PyDict>) -> PyResult<()> {
    for key in dict.keys() {
        let name = key.str()?.to_string();
        if !CONFIG_KEYS.contains(&name.as_str()) {
            return Err(PyValueError::new_err(format!(
                "unknown config key `{name}`; a config dict holds {}",
                CONFIG_KEYS.join(", ")
            )));
        }
    }
    Ok(())
}

/// Three values (R, G, B) of a mean or std: three numbers, or their text as the command line
/// takes it ("0.485,0.456,0.406"); a string is never read as its characters.
pub struct Rgb(pub [f32; 3]);

impl<'a, 'py> FromPyObject<'a, 'py> for Rgb {
    type Error = PyErr;

    fn extract(obj: Borrowed<'a, 'py, PyAny>) -> PyResult<Self> {
        let values: Vec<f32> = match obj.extract::<String>() {
            Ok(text) => (text.split(',').map(|v| v.trim().parse::<f32>()))
                .collect::<Result<_, _>>()
                .map_err(|_| {
                    PyValueError::new_err(format!(
                        "expected three numbers (R, G, B) or their text, got '{text}'"
                    ))
                })?,
            Err(_) => obj.extract().map_err(|_| {
                PyTypeError::new_err("expected three numbers (R, G, B) or their text")
            })?,
        };
        let count = values.len();
        <[f32; 3]>::try_from(values).map(Rgb).map_err(|_| {
            PyValueError::new_err(format!("expected three values (R, G, B), got {count}"))
        })
    }
}

/// Images given one at a time or as a list or tuple, as a list.
pub(crate) fn image_list<'py>(images: &Bound<'py, PyAny>) -> PyResult<Bound<'py, PyList>> {
    if let Ok(list) = images.cast::<PyList>() {
        return Ok(list.clone());
    }
    match images.cast::<PyTuple>() {
        Ok(tuple) => PyList::new(images.py(), tuple.iter()),
        Err(_) => PyList::new(images.py(), [images]),
    }
}

/// Module names given as one name or several, as a list.
pub(crate) fn names(names: &Bound<'_, PyAny>) -> PyResult<Vec<String>> {
    match names.extract::<String>() {
        Ok(name) => Ok(vec![name]),
        Err(_) => names.extract(),
    }
}

/// A cfg or head given as text (`"64,M,128"`) or as a list of items (`[64, "relu", "bn",
/// 4]`), as the text the library parses. A string is taken whole: iterating it would read
/// `"64"` as the items 6 and 4.
pub(crate) fn items_text(items: &Bound<'_, PyAny>) -> PyResult<String> {
    if let Ok(text) = items.extract::<String>() {
        return Ok(text);
    }
    // Iterating bytes would read `b"8,M"` as the character codes 56, 44, 77.
    if items.is_instance_of::<PyBytes>() || items.is_instance_of::<PyByteArray>() {
        return Err(PyTypeError::new_err(
            "expected a list of items or their text (\"64,M,128\"), got bytes: decode them",
        ));
    }
    let items: Vec<String> = items
        .try_iter()?
        .map(|item| item.and_then(|i| Ok(i.str()?.to_string())))
        .collect::<PyResult<_>>()?;
    Ok(items.join(","))
}

/// torchsummary's (or torchinfo's) table and the summary as JSON.
#[pyfunction]
#[pyo3(signature = (source, input_size, batch_size=-1, format="torchsummary", columns=None, depth=vgg::summary::torchinfo::DEFAULT_DEPTH, frozen=Vec::new(), dense=false))]
#[allow(clippy::too_many_arguments)]
fn summary_tables(
    source: &Bound<'_, PyAny>,
    input_size: [usize; 3],
    batch_size: i64,
    format: &str,
    columns: Option<Vec<String>>,
    depth: usize,
    frozen: Vec<String>,
    dense: bool,
) -> PyResult<(String, String)> {
    let config = config_from(source)?;
    // A config dict that names its channels has them, as a model does.
    let channels = if source.is_instance_of::<Model>()
        || source.get_item("in_channels").is_ok_and(|c| !c.is_none())
    {
        Channels::Own
    } else {
        Channels::FromInput
    };
    let batch = match batch_size {
        -1 => 1,
        n if n >= 1 => n as usize,
        n => {
            return Err(PyValueError::new_err(format!(
                "batch_size must be -1 or at least 1, got {n}"
            )));
        }
    };
    let frozen: Vec<Container> = check(frozen.iter().map(|part| part.parse()).collect())?;
    let style = check(Style::parse(format, batch_size, columns.as_deref(), depth))?;
    let form = if dense { Form::Dense } else { Form::Standard };
    let summary = check(Summary::of_input(
        &config, channels, form, batch, input_size, &frozen,
    ))?;
    Ok((render(&summary, &style), render(&summary, &Style::Json)))
}

/// The eight variants side by side at `input_size`, as JSON rows.
#[pyfunction]
fn compare_json(py: Python<'_>, input_size: [usize; 3]) -> PyResult<String> {
    py.detach(|| compare::compare(input_size))
        .map(|stats| compare::render(&stats, compare::Format::Json))
        .map_err(errors::to_py)
}

/// An SVG diagram of one or more configs at `input_size`.
#[pyfunction]
fn diagram_svg(sources: &Bound<'_, PyList>, input_size: [usize; 3]) -> PyResult<String> {
    let configs = sources
        .iter()
        .map(|s| config_from(&s))
        .collect::<PyResult<Vec<_>>>()?;
    check(vgg::viz::diagram::diagram(&configs, input_size))
}

/// Writes `svg` to `path` atomically: the SVG, or a PNG rendering of it for a `.png` path.
#[pyfunction]
fn save_svg(py: Python<'_>, path: PathBuf, svg: &str) -> PyResult<()> {
    py.detach(|| vgg::viz::diagram::write(&path, svg))
        .map_err(errors::to_py)
}

/// Validated preprocessing settings (torchvision's ImageNet mean and std by default).
pub fn preprocess_settings(
    base: Preprocess,
    resize: Option<usize>,
    crop: Option<usize>,
    mean: Option<Rgb>,
    std: Option<Rgb>,
) -> PyResult<Preprocess> {
    let preprocess = Preprocess {
        resize: resize.unwrap_or(base.resize),
        crop: crop.unwrap_or(base.crop),
        mean: mean.map_or(base.mean, |m| m.0),
        std: std.map_or(base.std, |s| s.0),
        ..base
    };
    check(preprocess.validate())?;
    Ok(preprocess)
}

/// Each image (a path, a PIL image, or an HxWx3 uint8 RGB array) decoded.
pub fn decode_images(
    py: Python<'_>,
    images: &Bound<'_, PyList>,
    preprocess: &Preprocess,
) -> PyResult<Vec<RgbImage>> {
    images
        .iter()
        .map(|image| {
            if let Ok(path) = image.extract::<PathBuf>() {
                return py.detach(|| preprocess.load(&path)).map_err(errors::to_py);
            }
            // A PIL image: its RGB pixels.
            let image = if image.hasattr("convert")? && image.hasattr("size")? {
                image.call_method1("convert", ("RGB",))?
            } else {
                image
            };
            let pixels = arrays::contiguous(&arrays::uint8_image(&image)?, "uint8")?;
            let pixels: PyReadonlyArray3<'_, u8> = pixels.extract().map_err(|_| {
                PyValueError::new_err("an image array must have 3 dimensions (HxWx3 RGB)")
            })?;
            let [h, w, c]: [usize; 3] = pixels.shape().try_into().expect("three dimensions");
            if c != 3 {
                return Err(PyValueError::new_err(format!(
                    "an image array must be HxWx3 RGB, got {h}x{w}x{c}"
                )));
            }
            let bytes = pixels
                .as_slice()
                .map_err(|_| PyValueError::new_err("unreadable image array"))?;
            RgbImage::from_raw(w as u32, h as u32, bytes.to_vec())
                .ok_or_else(|| PyValueError::new_err("the image array is too large"))
        })
        .collect()
}

/// The exact NCHW float32 batch the model sees for `images`.
#[pyfunction]
#[pyo3(signature = (images, resize=256, crop=224, mean=None, std=None))]
fn preprocess<'py>(
    py: Python<'py>,
    images: &Bound<'py, PyList>,
    resize: usize,
    crop: usize,
    mean: Option<Rgb>,
    std: Option<Rgb>,
) -> PyResult<Bound<'py, PyAny>> {
    let settings =
        preprocess_settings(Preprocess::imagenet(), Some(resize), Some(crop), mean, std)?;
    check(settings.reserve_batch(images.len()))?;
    let decoded = decode_images(py, images, &settings)?;
    let data = py
        .detach(|| Ok(settings.apply_all(&decoded)?.concat()))
        .map_err(errors::to_py)?;
    arrays::array(py, data, &[decoded.len(), 3, crop, crop])
}

/// One image's trip through the network: feature maps, filters, Grad-CAM, top classes.
#[pyclass(frozen, module = "vgg._vgg")]
struct Dissection {
    inner: vgg::viz::dissect::Dissection,
    title: String,
}

#[pymethods]
impl Dissection {
    /// The self-contained HTML page (every picture embedded).
    fn html(&self) -> String {
        vgg::viz::report::html(&self.inner, &self.title)
    }

    /// Writes `index.html` and the PNGs into `dir` (created if missing).
    fn save(&self, dir: PathBuf) -> PyResult<()> {
        // An explicit save into `dir`: the report's own files there are replaced.
        check(vgg::viz::report::write(
            &dir,
            &self.inner,
            (&self.title, &[]),
            true,
        ))
    }

    /// The most probable classes: `(name, probability)`, most probable first.
    #[getter]
    fn top(&self) -> Vec<(String, f32)> {
        self.inner.top.clone()
    }
}

/// Dissects `model` on one image (a path or an HxWx3 uint8 array).
#[pyfunction]
#[pyo3(signature = (model, image, resize=None, crop=None, title=None))]
fn dissect(
    py: Python<'_>,
    model: &Bound<'_, Model>,
    image: &Bound<'_, PyAny>,
    resize: Option<usize>,
    crop: Option<usize>,
    title: Option<String>,
) -> PyResult<Dissection> {
    let base = model.borrow().trained_preprocess();
    let settings = preprocess_settings(base, resize, crop, None, None)?;
    let list = PyList::new(py, [image])?;
    let decoded = decode_images(py, &list, &settings)?;
    let title = title.unwrap_or_else(|| {
        image
            .extract::<PathBuf>()
            .ok()
            .and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
            .unwrap_or_else(|| "an image".into())
    });
    let model = model.get();
    let labels = model.class_names_for_report();
    let inner = py
        .detach(|| {
            let input = settings.apply(&decoded[0])?;
            vgg::viz::dissect::dissect(&model.model(), &input, &settings, &labels)
        })
        .map_err(errors::to_py)?;
    Ok(Dissection { inner, title })
}

/// Sizes the thread pool every computation uses; call it before the first one.
#[pyfunction]
fn set_num_threads(threads: usize) -> PyResult<()> {
    check(vgg::threads::set_num_threads(threads))
}

#[pyfunction]
fn get_num_threads() -> usize {
    vgg::threads::num_threads()
}

/// Sets the memory budget that every large request is checked against before allocating
/// (MemoryError beyond it): bytes, a size such as "4G" or "512M", or None for the default
/// (3/4 of the memory this process may use).
#[pyfunction]
fn set_memory_limit(limit: Option<&Bound<'_, PyAny>>) -> PyResult<()> {
    let bytes = match limit {
        None => None,
        Some(value) => Some(memory_size(value)?),
    };
    check(vgg::limits::set_memory_budget(bytes))
}

/// A memory limit given as bytes (an int, or a float such as 4e9) or a size string.
fn memory_size(value: &Bound<'_, PyAny>) -> PyResult<u64> {
    let bad = || {
        PyValueError::new_err(format!(
            "memory limit must be a positive number of bytes or a size like '4G', got {value}"
        ))
    };
    if let Ok(text) = value.extract::<String>() {
        return check(vgg::limits::parse_size(&text));
    }
    if value.is_instance_of::<pyo3::types::PyBool>() {
        return Err(pyo3::exceptions::PyTypeError::new_err(
            "memory limit must be bytes (an int) or a size like '4G', got a bool",
        ));
    }
    let bytes: f64 = value.extract().map_err(|_| {
        pyo3::exceptions::PyTypeError::new_err(format!(
            "memory limit must be bytes (an int) or a size like '4G', got {}",
            value
                .get_type()
                .name()
                .map_or_else(|_| "?".into(), |n| n.to_string())
        ))
    })?;
    match value.extract::<u64>() {
        Ok(bytes) if bytes >= 1 => Ok(bytes),
        Ok(_) => Err(bad()),
        Err(_) if bytes.is_finite() && bytes.fract() != 0.0 => Err(PyValueError::new_err(format!(
            "memory limit must be a whole number of bytes, got {value}"
        ))),
        Err(_) if bytes >= u64::MAX as f64 && bytes.is_finite() => Err(PyValueError::new_err(
            format!("memory limit {value} is beyond a 64-bit count of bytes"),
        )),
        Err(_) if bytes.is_finite() && bytes >= 1.0 => Ok(bytes as u64),
        Err(_) => Err(bad()),
    }
}

/// The memory budget in bytes.
#[pyfunction]
fn get_memory_limit() -> u64 {
    vgg::limits::memory_budget()
}

/// A JSON value as the equivalent Python object.
pub fn json_to_py<'py>(py: Python<'py>, value: &serde_json::Value) -> PyResult<Bound<'py, PyAny>> {
    let json = py.import("json")?;
    json.call_method1("loads", (PyString::new(py, &value.to_string()),))
}

#[pymodule]
fn _vgg(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<Model>()?;
    m.add_class::<Dissection>()?;
    m.add("WeightsError", m.py().get_type::<WeightsError>())?;
    m.add_function(wrap_pyfunction!(summary_tables, m)?)?;
    m.add_function(wrap_pyfunction!(compare_json, m)?)?;
    m.add_function(wrap_pyfunction!(diagram_svg, m)?)?;
    m.add_function(wrap_pyfunction!(save_svg, m)?)?;
    m.add_function(wrap_pyfunction!(preprocess, m)?)?;
    m.add_function(wrap_pyfunction!(dissect, m)?)?;
    m.add_function(wrap_pyfunction!(set_num_threads, m)?)?;
    m.add_function(wrap_pyfunction!(get_num_threads, m)?)?;
    m.add_function(wrap_pyfunction!(set_memory_limit, m)?)?;
    m.add_function(wrap_pyfunction!(get_memory_limit, m)?)?;
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    Ok(())
}
