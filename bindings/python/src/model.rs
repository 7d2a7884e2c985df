//! `vgg.Model`: a network, its weights and a compiled fast engine, callable on numpy batches
//! from any number of Python threads (the GIL is released while it computes).

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, PoisonError, RwLock};

use candle_core::{Device, Tensor};
use numpy::PyReadonlyArrayDyn;
use pyo3::exceptions::PyTypeError;
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyList};
use vgg::data::RgbImage;
use vgg::data::preprocess::Preprocess;
use vgg::engine::Precision;
use vgg::fast::{FastOptions, FastVgg};
use vgg::infer::classify::classify_images;
use vgg::infer::protocol::{Protocol, TrainingScale, scale_classifier};
use vgg::infer::{Backend, Classifier, Engine};
use vgg::limits::array_bytes;
use vgg::progress::Silent;
use vgg::quantize::{CalibrationOptions, calibrate};
use vgg::weights::StateDict;
use vgg::weights::load::{LoadReport, load_into};
use vgg::weights::recorded::Int8Calibration;
use vgg::{ArchChoice, ConfigOverrides, Mode, ModelSource, Vgg, VggConfig};

use crate::arrays::{array, array_to_tensor, float32, nchw, tensor_to_array};
use crate::errors::{PyResult, check};

/// A VGG network. Build one with `vgg.models.vgg16(...)`, `vgg.models.custom(...)` or
/// `vgg.load(path)`; `model(x)` gives the logits `[N, num_classes]` of an NCHW batch
/// (numpy, CPU torch tensor, nested lists). `copy.deepcopy(model)` copies its weights.
#[pyclass(frozen, module = "vgg._vgg")]
pub struct Model {
    /// The module-by-module model: weights, state_dict, activations, training mode.
    model: RwLock<Vgg>,
    /// The fast engine, compiled for the last input shape (recompiled when it changes).
    /// Whoever needs both locks takes this one first, then `model`'s; neither is held while
    /// waiting for the GIL.
    engine: Mutex<FastSlot>,
    training: AtomicBool,
    /// What loading the checkpoint found, when there was one.
    report: Option<LoadReport>,
    /// The checkpoint's class names, ImageNet's, or `class N`; read once.
    names: Vec<String>,
    /// The preprocessing a `vgg train` checkpoint was trained with, else ImageNet's.
    preprocess: Preprocess,
    /// Whether the checkpoint recorded it (rather than a default standing in for it).
    preprocess_recorded: bool,
    /// The scale it was trained at, which the paper's protocols choose their scales by.
    training_scale: TrainingScale,
}

#[pymethods]
impl Model {
    /// Opens a model: `arch` is a torchvision name, `custom` (with `cfg`) or `auto` (from
    /// `weights`). Use `vgg.models` and `vgg.load` rather than calling this directly.
    #[staticmethod]
    #[pyo3(signature = (arch, *, cfg=None, batch_norm=false, hidden=None, pool=None,
        num_classes=None, dropout=None, in_channels=None, weights=None, strict=true, seed=0,
        head=None, precision="f32"))]
    #[allow(clippy::too_many_arguments)]
    fn open(
        py: Python<'_>,
        arch: &str,
        cfg: Option<Bound<'_, PyAny>>,
        batch_norm: bool,
        hidden: Option<usize>,
        pool: Option<usize>,
        num_classes: Option<usize>,
        dropout: Option<f64>,
        in_channels: Option<usize>,
        weights: Option<PathBuf>,
        strict: bool,
        seed: u64,
        head: Option<Bound<'_, PyAny>>,
        precision: &str,
    ) -> PyResult<Model> {
        let precision = parse_precision(precision)?;
        let head = match head {
            None => None,
            Some(head) => Some(crate::errors::check(vgg::model::head::parse_head(
                &crate::items_text(&head)?,
            ))?),
        };
        let cfg = cfg.map(|cfg| crate::items_text(&cfg)).transpose()?;
        let source = ModelSource {
            arch: crate::errors::check(ArchChoice::parse(arch, cfg.as_deref(), batch_norm))?,
            overrides: ConfigOverrides {
                head,
                in_channels,
                num_classes,
                dropout,
                hidden,
                pool,
            },
            weights,
            strict,
            seed,
            init: Default::default(),
            int8: None,
        };
        let (model, report) = py
            .detach(|| source.open(&Device::Cpu))
            .map_err(crate::errors::to_py)?;
        let names = check(source.class_names(model.config().num_classes()))?;
        // Asked for int8, a missing or damaged calibration is the error; otherwise a damaged
        // one only leaves int8 unavailable.
        let int8 = match precision {
            Precision::Int8 => Some(check(source.int8_calibration_for(model.config()))?),
            _ => (source.weights.as_deref())
                .and_then(|path| vgg::weights::recorded_int8(path).ok().flatten()),
        };
        let slot = FastSlot {
            precision: Precision::F32,
            int8,
            plan: None,
        };
        let slot = slot.with_precision(precision)?;
        Ok(Model {
            model: RwLock::new(model),
            engine: Mutex::new(slot),
            training: AtomicBool::new(false),
            report,
            names,
            preprocess: check(source.preprocess())?,
            preprocess_recorded: check(source.recorded_preprocess())?.is_some(),
            training_scale: check(source.training_scale())?,
        })
    }

    /// Logits `[N, num_classes]` for an NCHW float32 batch: the fast engine in eval mode, the
    /// module-by-module model (dropout, batch statistics) in training mode.
    fn __call__<'py>(&self, py: Python<'py>, x: &Bound<'py, PyAny>) -> PyResult<Bound<'py, PyAny>> {
        let x = self.input(x)?;
        let (shape, data) = nchw(&x)?;
        let classes = self.config().num_classes();
        let logits = if self.training.load(Ordering::Relaxed) {
            py.detach(|| -> vgg::Result<Vec<f32>> {
                let x = Tensor::from_slice(data, shape.as_slice(), &Device::Cpu)?;
                let logits = self.model().forward(&x, Mode::Train)?;
                self.batch_statistics_changed();
                Ok(logits.flatten_all()?.to_vec1::<f32>()?)
            })
            .map_err(crate::errors::to_py)?
        } else {
            py.detach(|| self.run_fast(shape, data))
                .map_err(crate::errors::to_py)?
        };
        array(py, logits, &[shape[0], classes])
    }

    /// The outputs of the modules named in `layers` (`features.3`, `avgpool`,
    /// `classifier.4`, …) for an NCHW float32 batch, from one pass, as a dict.
    #[pyo3(signature = (x, layers))]
    fn features<'py>(
        &self,
        py: Python<'py>,
        x: &Bound<'py, PyAny>,
        layers: &Bound<'py, PyAny>,
    ) -> PyResult<Bound<'py, PyDict>> {
        let layers = crate::names(layers)?;
        let x = self.input(x)?;
        let (shape, data) = nchw(&x)?;
        let mode = self.mode();
        let names: Vec<&str> = layers.iter().map(String::as_str).collect();
        let outputs = py
            .detach(|| -> vgg::Result<Vec<Tensor>> {
                let x = Tensor::from_slice(data, shape.as_slice(), &Device::Cpu)?;
                let outputs = self.model().forward_taps(&x, mode, &names)?;
                if mode == Mode::Train {
                    self.batch_statistics_changed();
                }
                Ok(outputs)
            })
            .map_err(crate::errors::to_py)?;
        let dict = PyDict::new(py);
        for (name, output) in layers.iter().zip(&outputs) {
            dict.set_item(name, tensor_to_array(py, output)?)?;
        }
        Ok(dict)
    }

    /// The weights and buffers under torchvision's keys, as numpy arrays, in order.
    fn state_dict<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let tensors = check(self.model().state_dict())?;
        let dict = PyDict::new(py);
        for (key, tensor) in &tensors {
            dict.set_item(key, tensor_to_array(py, tensor)?)?;
        }
        Ok(dict)
    }

    /// Writes the network as an ONNX graph for inputs of `input_shape` (N, C, H, W; by
    /// default one image of the size it was trained at, else 224), the batch left free if
    /// `dynamic_batch`. Initializers are named by the state_dict's keys; the preprocessing
    /// and class names are recorded in the model's metadata.
    #[pyo3(signature = (path, input_shape=None, dynamic_batch=false, opset=vgg::weights::onnx::DEFAULT_OPSET))]
    fn to_onnx(
        &self,
        py: Python<'_>,
        path: PathBuf,
        input_shape: Option<[usize; 4]>,
        dynamic_batch: bool,
        opset: i64,
    ) -> PyResult<()> {
        let model = self.model();
        let preprocess = (self.preprocess.clone(), self.preprocess_recorded);
        let classes = self.names.clone();
        let options = vgg::weights::onnx::ExportOptions {
            dynamic_batch,
            opset,
            ..vgg::weights::onnx::ExportOptions::for_model(&model, preprocess, classes, input_shape)
        };
        py.detach(|| vgg::weights::onnx::write(&path, &model, &options))
            .map_err(crate::errors::to_py)
    }

    /// Loads `state_dict` (torchvision keys; float32 and int64 arrays) as PyTorch's
    /// `load_state_dict`: strict, any missing, unexpected or mis-shaped key raises
    /// `vgg.WeightsError` listing them all; not strict, missing keys keep their values and
    /// unexpected ones are ignored (a size mismatch still raises). Returns the report as a
    /// dict (`missing_keys`, `unexpected_keys`, `mismatched`, `loaded`, `hints`). An int8
    /// calibration measured the old weights and is dropped (precision goes back to "f32").
    #[pyo3(signature = (state_dict, strict=true))]
    fn load_state_dict<'py>(
        &self,
        py: Python<'py>,
        state_dict: &Bound<'py, PyDict>,
        strict: bool,
    ) -> PyResult<Bound<'py, PyDict>> {
        let mut tensors = Vec::with_capacity(state_dict.len());
        for (key, value) in state_dict.iter() {
            let key = key.extract::<String>()?;
            let tensor = array_to_tensor(&value, &format!("state_dict['{key}']"))?;
            tensors.push((key, tensor));
        }
        let state = StateDict::from_tensors(tensors);
        let report = py
            .detach(|| -> vgg::Result<LoadReport> {
                // Locks in the one order every method takes them: the engine, then the model.
                let mut engine = self.engine.lock().unwrap_or_else(PoisonError::into_inner);
                let mut model = self.model.write().unwrap_or_else(PoisonError::into_inner);
                let (loaded, report) = load_into(&model, state, strict)?;
                *model = loaded;
                // The calibration measured the old weights: int8 needs a new one.
                *engine = FastSlot {
                    precision: Precision::F32,
                    int8: None,
                    plan: None,
                };
                Ok(report)
            })
            .map_err(crate::errors::to_py)?;
        report_dict(py, &report)
    }

    /// What loading the checkpoint found (`None` for random weights).
    #[getter]
    fn load_report<'py>(&self, py: Python<'py>) -> PyResult<Option<Bound<'py, PyDict>>> {
        self.report.as_ref().map(|r| report_dict(py, r)).transpose()
    }

    /// Training mode: dropout and batch statistics, as `nn.Module.train()`.
    #[pyo3(signature = (mode=true))]
    fn train(slf: Bound<'_, Self>, mode: bool) -> Bound<'_, Self> {
        slf.get().training.store(mode, Ordering::Relaxed);
        slf
    }

    /// Evaluation mode (the default), as `nn.Module.eval()`.
    fn eval(slf: Bound<'_, Self>) -> Bound<'_, Self> {
        slf.get().training.store(false, Ordering::Relaxed);
        slf
    }

    #[getter]
    fn training(&self) -> bool {
        self.training.load(Ordering::Relaxed)
    }

    /// Number format of the fast engine's products: "f32" (the default), "bf16" (bf16
    /// operands, f32 accumulation) or "int8" (u8 × s8 products with i32 sums; needs a
    /// calibration: a file `vgg quantize` wrote, or `calibrate`). Training mode and
    /// `features` always compute in f32.
    #[getter]
    fn precision(&self, py: Python<'_>) -> &'static str {
        // Not under the GIL: a call on another thread holds the slot while it computes.
        py.detach(|| self.slot().precision.name())
    }

    #[setter]
    fn set_precision(&self, py: Python<'_>, value: &str) -> PyResult<()> {
        let precision = parse_precision(value)?;
        py.detach(|| {
            let mut slot = self.slot();
            if slot.precision != precision {
                let current = FastSlot {
                    precision: slot.precision,
                    int8: slot.int8.take(),
                    plan: None,
                };
                *slot = current.with_precision(precision)?;
            }
            Ok(())
        })
    }

    /// Calibrates int8 on `images` (paths, PIL images or HxWx3 uint8 arrays, preprocessed as
    /// `classify` does): every layer's input range and its error in int8; layers whose
    /// relative RMS error exceeds `max_error` stay f32. Returns one dict per layer (path,
    /// input_min, input_max, relative_rms, max_over_range, int8, kept_because); set
    /// `precision = "int8"` to use it.
    #[pyo3(signature = (images, *, batch_size=8, max_error=0.05, resize=None, crop=None, mean=None, std=None))]
    #[allow(clippy::too_many_arguments)]
    fn calibrate<'py>(
        &self,
        py: Python<'py>,
        images: &Bound<'py, PyAny>,
        batch_size: usize,
        max_error: f64,
        resize: Option<usize>,
        crop: Option<usize>,
        mean: Option<crate::Rgb>,
        std: Option<crate::Rgb>,
    ) -> PyResult<Bound<'py, PyList>> {
        let options = CalibrationOptions {
            batch: batch_size,
            max_error,
        };
        check(options.validate())?;
        let images = &crate::image_list(images)?;
        check(vgg::infer::check_takes_images(&self.config()))?;
        let preprocess =
            crate::preprocess_settings(self.preprocess.clone(), resize, crop, mean, std)?;
        check(preprocess.reserve_batch(images.len()))?;
        let decoded = crate::decode_images(py, images, &preprocess)?;
        let calibration = py
            .detach(|| -> vgg::Result<Int8Calibration> {
                let inputs = preprocess.apply_all(&decoded)?;
                let size = [preprocess.crop, preprocess.crop];
                let calibration = calibrate(&self.model(), &inputs, size, options, &Silent)?;
                let mut slot = self.slot();
                slot.int8 = Some(calibration.clone());
                slot.plan = None;
                Ok(calibration)
            })
            .map_err(crate::errors::to_py)?;
        let layers = PyList::empty(py);
        for l in &calibration.layers {
            let d = PyDict::new(py);
            d.set_item("path", &l.path)?;
            d.set_item("input_min", l.input_min)?;
            d.set_item("input_max", l.input_max)?;
            d.set_item("relative_rms", l.relative_rms)?;
            d.set_item("max_over_range", l.max_over_range)?;
            d.set_item("int8", l.int8)?;
            d.set_item("kept_because", &l.kept_because)?;
            layers.append(d)?;
        }
        Ok(layers)
    }

    /// The config as a dict: name, cfg, batch_norm, in_channels, num_classes, dropout,
    /// hidden, pool.
    #[getter]
    fn config_dict<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        crate::json_to_py(py, &config_json(&self.config()))
    }

    /// Names of the classes: a `vgg train` checkpoint's, ImageNet's, or `class N`.
    #[getter]
    fn class_names(&self) -> Vec<String> {
        self.names.clone()
    }

    /// The `topk` most probable classes of each image (a path, or HxWx3 uint8 RGB array),
    /// preprocessed as torchvision does (by default as the model was trained, when its
    /// checkpoint says; else resize 256, crop 224, ImageNet's statistics):
    /// `[(index, name, probability), …]` per image.
    /// `protocol`: "center" (resize, crop), or the paper's "dense", "multi-crop" or
    /// "dense+multi-crop" over `scales` (default: the paper's choice for the training scale
    /// S, S-32, S, S+32 for a checkpoint trained at a fixed S, else 256, 384, 512; in
    /// proportion to `crop`); multi-crop takes `crop`-sized crops.
    #[pyo3(signature = (images, topk=5, resize=None, crop=None, mean=None, std=None, batch_size=8,
                        protocol="center", scales=None))]
    #[allow(clippy::too_many_arguments)]
    fn classify(
        &self,
        py: Python<'_>,
        images: &Bound<'_, PyAny>,
        topk: usize,
        resize: Option<usize>,
        crop: Option<usize>,
        mean: Option<crate::Rgb>,
        std: Option<crate::Rgb>,
        batch_size: usize,
        protocol: &str,
        scales: Option<Vec<usize>>,
    ) -> PyResult<Vec<Vec<(usize, String, f32)>>> {
        let protocol: Protocol = protocol.parse().map_err(crate::errors::to_py)?;
        let images = &crate::image_list(images)?;
        check(vgg::infer::check_takes_images(&self.config()))?;
        if protocol == Protocol::Center && scales.is_some() {
            return Err(pyo3::exceptions::PyValueError::new_err(
                "scales go with protocol 'dense', 'multi-crop' or 'dense+multi-crop'",
            ));
        }
        if batch_size == 0 || topk == 0 {
            return Err(pyo3::exceptions::PyValueError::new_err(
                "batch_size and topk must be at least 1",
            ));
        }
        let base = self.preprocess.clone();
        let preprocess = crate::preprocess_settings(base, resize, crop, mean, std)?;
        let crop = preprocess.crop;
        let scales = scales.unwrap_or_else(|| self.training_scale.test_scales(crop));
        let decoded = crate::decode_images(py, images, &preprocess)?;
        let names = &self.names;
        let batch = check(vgg::infer::batch_for(batch_size, decoded.len()))?;
        let shape = [batch, self.config().in_channels(), crop, crop];
        let predictions = py
            .detach(|| match protocol {
                Protocol::Center => self.classify_decoded(&decoded, &preprocess, shape, topk),
                _ => {
                    let engine = Engine::Fast(self.slot().precision);
                    let model = self.model();
                    let mut classifier =
                        scale_classifier(&model, engine, batch, protocol, &scales, crop)?;
                    classify_images(&mut classifier, &decoded, &preprocess, batch, topk)
                }
            })
            .map_err(crate::errors::to_py)?;
        Ok(predictions
            .into_iter()
            .map(|top| {
                top.into_iter()
                    .map(|p| (p.index, names[p.index].clone(), p.prob))
                    .collect()
            })
            .collect())
    }

    /// A copy with weights of its own (what `copy.deepcopy` of a PyTorch module gives, as
    /// before fine-tuning one of two): the same config, weights, running statistics,
    /// precision, int8 calibration, mode and class names.
    fn __deepcopy__(&self, py: Python<'_>, _memo: &Bound<'_, PyAny>) -> PyResult<Model> {
        self.duplicate(py)
    }

    /// As `__deepcopy__`: two models never share weights that a training-mode pass updates
    /// in place (batch norm's running statistics).
    fn __copy__(&self, py: Python<'_>) -> PyResult<Model> {
        self.duplicate(py)
    }

    fn __repr__(&self) -> String {
        let config = self.config();
        let params: usize = self
            .model()
            .parameters()
            .iter()
            .map(|(_, v)| v.as_tensor().elem_count())
            .sum();
        format!(
            "vgg.Model({}, {} classes, {params} parameters{})",
            config.name(),
            config.num_classes(),
            if self.training() { ", training" } else { "" }
        )
    }
}

impl Model {
    /// See [`Model::__deepcopy__`].
    fn duplicate(&self, py: Python<'_>) -> PyResult<Model> {
        let model = py
            .detach(|| -> vgg::Result<Vgg> {
                let model = self.model();
                let state = StateDict::from_tensors(model.state_dict()?);
                Ok(load_into(&model, state, true)?.0)
            })
            .map_err(crate::errors::to_py)?;
        let (precision, int8) = {
            let slot = self.slot();
            (slot.precision, slot.int8.clone())
        };
        Ok(Model {
            model: RwLock::new(model),
            engine: Mutex::new(FastSlot {
                precision,
                int8,
                plan: None,
            }),
            training: AtomicBool::new(self.training.load(Ordering::Relaxed)),
            report: self.report.clone(),
            names: self.names.clone(),
            preprocess: self.preprocess.clone(),
            preprocess_recorded: self.preprocess_recorded,
            training_scale: self.training_scale,
        })
    }

    /// See [`Model::classify`]: the checkpoint's preprocessing, else ImageNet's.
    pub fn trained_preprocess(&self) -> Preprocess {
        self.preprocess.clone()
    }

    pub fn class_names_for_report(&self) -> Vec<String> {
        self.names.clone()
    }

    /// `x` as a float32 array, its shape (when it has one) checked first: a misshapen array,
    /// or one whose float32 copy would not fit the memory budget, is refused before it is
    /// copied. (The pass itself is checked where its engine is compiled, which knows that
    /// this model's own plan is replaced, not added to.)
    fn input<'py>(&self, x: &Bound<'py, PyAny>) -> PyResult<PyReadonlyArrayDyn<'py, f32>> {
        if !x.hasattr("shape")? && !x.hasattr("__array__")? && !x.hasattr("__iter__")? {
            let kind = x
                .get_type()
                .name()
                .map_or_else(|_| "?".into(), |n| n.to_string());
            return Err(PyTypeError::new_err(format!(
                "expected an NCHW array (numpy, torch, nested lists), got {kind}"
            )));
        }
        if let Ok(dims) = x.getattr("shape").and_then(|s| s.extract::<Vec<usize>>()) {
            let shape = check(vgg::model::nchw(&dims))?;
            check(vgg::limits::reserve(array_bytes(&shape, 4), || {
                format!("an input array of shape {shape:?}")
            }))?;
        }
        float32(x)
    }

    /// A training-mode pass updated batch norm's running statistics: the engine, compiled
    /// with the old ones folded in, must be rebuilt.
    fn batch_statistics_changed(&self) {
        if self.config().batch_norm() {
            self.slot().plan = None;
        }
    }

    /// The engine's slot, locked.
    fn slot(&self) -> std::sync::MutexGuard<'_, FastSlot> {
        self.engine.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub fn config(&self) -> VggConfig {
        self.model().config().clone()
    }

    /// A read guard on the reference model.
    pub fn model(&self) -> std::sync::RwLockReadGuard<'_, Vgg> {
        self.model.read().unwrap_or_else(PoisonError::into_inner)
    }

    fn mode(&self) -> Mode {
        if self.training.load(Ordering::Relaxed) {
            Mode::Train
        } else {
            Mode::Eval
        }
    }

    /// The engine compiled for `shape`, compiled now if the last call had another.
    fn with_engine<T>(
        &self,
        shape: [usize; 4],
        run: impl FnOnce(&mut FastVgg) -> vgg::Result<T>,
    ) -> vgg::Result<T> {
        let mut slot = self.slot();
        if slot.plan.as_ref().is_none_or(|e| e.input_shape() != shape) {
            slot.plan = None; // free the old plan before building the new one
            slot.plan = Some(FastVgg::from_model(&self.model(), shape, slot.options())?);
        }
        run(slot.plan.as_mut().expect("compiled above"))
    }

    fn run_fast(&self, shape: [usize; 4], data: &[f32]) -> vgg::Result<Vec<f32>> {
        self.with_engine(shape, |engine| engine.forward_slice(data))
    }

    fn classify_decoded(
        &self,
        images: &[RgbImage],
        preprocess: &Preprocess,
        shape: [usize; 4],
        topk: usize,
    ) -> vgg::Result<Vec<Vec<vgg::infer::Prediction>>> {
        let mut slot = self.slot();
        let engine = match slot.plan.take() {
            Some(engine) if engine.input_shape() == shape => engine,
            _ => FastVgg::from_model(&self.model(), shape, slot.options())?,
        };
        let mut classifier = Classifier::new(Backend::Fast(engine), false);
        let result = classify_images(&mut classifier, images, preprocess, shape[0], topk);
        if let Backend::Fast(engine) = classifier.backend {
            slot.plan = Some(engine);
        }
        result
    }
}

/// A precision's name as a `ValueError` when it is not one.
fn parse_precision(name: &str) -> PyResult<Precision> {
    Precision::parse(name).map_err(pyo3::exceptions::PyValueError::new_err)
}

/// The fast engine's precision, the int8 calibration (the checkpoint's, or `calibrate`'s)
/// and the plan, compiled for the last input shape.
struct FastSlot {
    precision: Precision,
    int8: Option<Int8Calibration>,
    plan: Option<FastVgg>,
}

impl FastSlot {
    /// This slot computing in `precision`: int8 needs a calibration.
    fn with_precision(self, precision: Precision) -> PyResult<FastSlot> {
        if precision == Precision::Int8 && self.int8.is_none() {
            return Err(pyo3::exceptions::PyValueError::new_err(
                "precision \"int8\" needs a calibration: load a file `vgg quantize` wrote, or \
                 call model.calibrate(images) first",
            ));
        }
        Ok(FastSlot {
            precision,
            plan: None,
            ..self
        })
    }

    fn options(&self) -> FastOptions {
        FastOptions {
            plan: Engine::Fast(self.precision).plan_options(),
            int8: (self.precision == Precision::Int8)
                .then(|| self.int8.clone())
                .flatten(),
        }
    }
}

fn report_dict<'py>(py: Python<'py>, report: &LoadReport) -> PyResult<Bound<'py, PyDict>> {
    let dict = PyDict::new(py);
    dict.set_item("missing_keys", &report.missing)?;
    dict.set_item("unexpected_keys", &report.unexpected)?;
    let mismatched: Vec<(String, Vec<usize>, Vec<usize>)> = report
        .mismatched
        .iter()
        .map(|m| (m.key.clone(), m.checkpoint.clone(), m.model.clone()))
        .collect();
    dict.set_item("mismatched", mismatched)?;
    dict.set_item("loaded", report.loaded)?;
    dict.set_item("hints", &report.hints)?;
    Ok(dict)
}

/// A config as JSON, in `vgg.models.custom`'s terms.
pub fn config_json(config: &VggConfig) -> serde_json::Value {
    let cfg: Vec<serde_json::Value> = config
        .features()
        .iter()
        .map(|item| match item {
            vgg::CfgItem::Conv(c) => serde_json::json!(c),
            vgg::CfgItem::Pool => serde_json::json!("M"),
        })
        .collect();
    serde_json::json!({
        "name": config.name(),
        "cfg": cfg,
        "batch_norm": config.batch_norm(),
        "in_channels": config.in_channels(),
        "num_classes": config.num_classes(),
        "dropout": config.dropout(),
        "hidden": config.hidden(),
        "pool": config.pool(),
        "head": vgg::model::head::head_string(config.head()),
        "outputs_probabilities": config.outputs_probabilities(),
    })
}
