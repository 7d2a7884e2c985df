//! Between numpy arrays and the library's buffers and tensors, copying only where the
//! layouts differ (inputs are read in place; outputs become arrays without a copy).

use candle_core::{DType, Device, Tensor};
use numpy::{PyArray, PyArrayMethods, PyReadonlyArrayDyn, PyUntypedArrayMethods};
use pyo3::exceptions::{PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::PyDict;

use crate::errors::{PyResult, check};

/// `x` (a numpy array, a CPU torch tensor, anything with `__array__`) as a C-contiguous
/// float32 array: the same array, without a copy, when it already is one.
pub fn float32<'py>(x: &Bound<'py, PyAny>) -> PyResult<PyReadonlyArrayDyn<'py, f32>> {
    // A torch tensor that requires grad refuses conversion until detached.
    let detached;
    let x = if x.hasattr("requires_grad")? && x.hasattr("detach")? {
        detached = x.call_method0("detach")?;
        &detached
    } else {
        x
    };
    let numpy = x.py().import("numpy")?;
    let is_array = x.is_instance(&numpy.getattr("ndarray")?)?;
    if !is_array && x.hasattr("__dlpack__")? && !x.hasattr("__array__")? {
        let array = numpy.call_method1("from_dlpack", (x,))?;
        return contiguous(&array, "float32")?.extract();
    }
    contiguous(&numbers(x, "the input")?, "float32")?.extract()
}

/// `x` as a numpy array (itself when it is one) of numbers: bool, integers or floats.
/// Anything else (`None`, text, objects) is a `TypeError` naming `what`, rather than NaN or
/// numpy's own words.
pub fn numbers<'py>(x: &Bound<'py, PyAny>, what: &str) -> PyResult<Bound<'py, PyAny>> {
    let refused = || {
        let kind = x
            .get_type()
            .name()
            .map_or_else(|_| "?".into(), |n| n.to_string());
        PyTypeError::new_err(format!("{what} must be an array of numbers, got {kind}"))
    };
    let array = (x.py().import("numpy")?.call_method1("asarray", (x,))).map_err(|_| refused())?;
    let kind: String = array.getattr("dtype")?.getattr("kind")?.extract()?;
    match "biuf".contains(kind.as_str()) {
        true => Ok(array),
        false => Err(refused()),
    }
}

/// An image given as an array: refused unless its values are uint8, since a cast would
/// silently turn floats in [0, 1] black and wrap integers outside 0..=255.
pub fn uint8_image<'py>(image: &Bound<'py, PyAny>) -> PyResult<Bound<'py, PyAny>> {
    let not_an_image = || {
        PyTypeError::new_err(format!(
            "images are paths, PIL images or HxWx3 uint8 arrays, got {}",
            image
                .get_type()
                .name()
                .map_or_else(|_| "?".into(), |n| n.to_string())
        ))
    };
    let numpy = image.py().import("numpy")?;
    let array = (numpy.call_method1("asarray", (image,))).map_err(|_| not_an_image())?;
    let dtype = array.getattr("dtype")?;
    let kind: String = dtype.getattr("kind")?.extract()?;
    let ndim: usize = array.getattr("ndim")?.extract()?;
    if ndim == 0 || !"biuf".contains(kind.as_str()) {
        return Err(not_an_image());
    }
    let name: String = dtype.getattr("name")?.extract()?;
    if name != "uint8" {
        return Err(PyTypeError::new_err(format!(
            "an image array must be uint8 (HxWx3, values 0-255), got {name}; convert floats \
             in [0, 1] with (x * 255).round().astype(numpy.uint8)"
        )));
    }
    Ok(array)
}

/// `x` as a C-contiguous numpy array of `dtype` (itself when it already is one), of the
/// same shape (`ascontiguousarray` would make a 0-d array 1-d).
pub fn contiguous<'py>(x: &Bound<'py, PyAny>, dtype: &str) -> PyResult<Bound<'py, PyAny>> {
    let numpy = x.py().import("numpy")?;
    let kwargs = PyDict::new(x.py());
    kwargs.set_item("dtype", dtype)?;
    kwargs.set_item("order", "C")?;
    numpy.call_method("asarray", (x,), Some(&kwargs))
}

/// An NCHW float32 batch: its shape and its elements, read in place.
pub fn nchw<'a>(x: &'a PyReadonlyArrayDyn<'_, f32>) -> PyResult<([usize; 4], &'a [f32])> {
    let shape = vgg::model::nchw(x.shape()).map_err(crate::errors::to_py)?;
    let data = x
        .as_slice()
        .map_err(|_| PyValueError::new_err("the array must be C-contiguous"))?;
    Ok((shape, data))
}

/// A float32 array of `shape` from `values`, without copying them.
pub fn array<'py>(
    py: Python<'py>,
    values: Vec<f32>,
    shape: &[usize],
) -> PyResult<Bound<'py, PyAny>> {
    Ok(PyArray::from_vec(py, values).reshape(shape)?.into_any())
}

/// A tensor as a numpy array of its dtype (float32, or int64 for counters).
pub fn tensor_to_array<'py>(py: Python<'py>, tensor: &Tensor) -> PyResult<Bound<'py, PyAny>> {
    let dims = tensor.dims().to_vec();
    let flat = check(tensor.flatten_all().map_err(Into::into))?;
    Ok(match tensor.dtype() {
        DType::I64 => {
            let values: Vec<i64> = check(flat.to_vec1().map_err(Into::into))?;
            PyArray::from_vec(py, values).reshape(dims)?.into_any()
        }
        _ => {
            let values: Vec<f32> = check(
                flat.to_dtype(DType::F32)
                    .and_then(|t| t.to_vec1())
                    .map_err(Into::into),
            )?;
            array(py, values, &dims)?
        }
    })
}

/// An array (anything numpy converts) as a tensor: integer and bool arrays as int64 (batch
/// norm's counters), all others as float32.
/// `what` names the value in errors.
pub fn array_to_tensor(value: &Bound<'_, PyAny>, what: &str) -> PyResult<Tensor> {
    let device = Device::Cpu;
    let value = &numbers(value, what)?;
    let kind: String = value.getattr("dtype")?.getattr("kind")?.extract()?;
    let value = &contiguous(
        value,
        if "iub".contains(kind.as_str()) {
            "int64"
        } else {
            "float32"
        },
    )?;
    if let Ok(a) = value.extract::<PyReadonlyArrayDyn<'_, f32>>() {
        let data = a
            .as_slice()
            .map_err(|_| PyValueError::new_err("arrays must be C-contiguous"))?;
        return check(Tensor::from_slice(data, a.shape(), &device).map_err(Into::into));
    }
    if let Ok(a) = value.extract::<PyReadonlyArrayDyn<'_, i64>>() {
        let data = a
            .as_slice()
            .map_err(|_| PyValueError::new_err("arrays must be C-contiguous"))?;
        return check(Tensor::from_slice(data, a.shape(), &device).map_err(Into::into));
    }
    Err(PyValueError::new_err(
        "state_dict values must be float32 or int64 numpy arrays",
    ))
}
