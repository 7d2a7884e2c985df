//! The library's errors as Python exceptions: bad checkpoints are `vgg.WeightsError`, missing
//! files `FileNotFoundError`, other I/O `OSError`, requests over the memory budget
//! `MemoryError`, bad arguments and shapes `ValueError`.

use pyo3::exceptions::{
    PyFileNotFoundError, PyMemoryError, PyOSError, PyRuntimeError, PyValueError,
};
use pyo3::{PyErr, create_exception};
use vgg::Error;
use vgg::engine::EngineError;

create_exception!(
    _vgg,
    WeightsError,
    PyValueError,
    "A checkpoint that cannot be read, or that does not fit the model."
);

/// `Result` with the library's error converted on the way out.
pub type PyResult<T> = Result<T, PyErr>;

/// The Python exception for a library error, with the library's message.
pub fn to_py(error: Error) -> PyErr {
    let message = vgg::error::one_line(&error.to_string());
    match error {
        Error::BadWeights { .. } | Error::StateDictMismatch(_) => WeightsError::new_err(message),
        Error::Io { source, .. } | Error::Write { source, .. }
            if source.kind() == std::io::ErrorKind::NotFound =>
        {
            PyFileNotFoundError::new_err(message)
        }
        Error::Io { .. } | Error::Write { .. } => PyOSError::new_err(message),
        Error::OverBudget { .. } | Error::Engine(EngineError::OutOfMemory { .. }) => {
            PyMemoryError::new_err(message)
        }
        Error::Candle(_) => PyRuntimeError::new_err(message),
        _ => PyValueError::new_err(message),
    }
}

/// Converts a library result.
pub fn check<T>(result: vgg::Result<T>) -> PyResult<T> {
    result.map_err(to_py)
}
