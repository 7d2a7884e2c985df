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

/// The library's words for the command line's flags (first) and what a Python caller
/// passes instead: the messages are shared, the spelling of their arguments is not.
const PYTHON_NAMES: [(&str, &str); 20] = [
    (
        "--memory-limit / vgg.set_memory_limit()",
        "vgg.set_memory_limit()",
    ),
    ("--calib DIR", "Model.calibrate(images)"),
    ("--weights FILE", "weights"),
    ("--batch-size", "batch_size"),
    ("--max-error", "max_error"),
    ("--num-classes", "num_classes"),
    ("--batch-norm", "batch_norm"),
    ("--in-channels", "in_channels"),
    ("--resize", "resize"),
    ("--crop", "crop"),
    ("--mean", "mean"),
    ("--std", "std"),
    ("--scales", "scales"),
    ("--precision", "precision"),
    ("--hidden", "hidden"),
    ("--pool", "pool"),
    ("--dropout", "dropout"),
    ("--head", "head"),
    ("--cfg", "cfg"),
    ("--opset", "opset"),
];

/// `message` with each command-line flag that has a Python argument named as that argument
/// (`--batch-size` → `batch_size`), a whole flag at a time (`--pool` never inside
/// `--pooling`).
pub fn python_names(message: &str) -> String {
    let mut out = String::with_capacity(message.len());
    let mut rest = message;
    'scan: while let Some(at) = rest.find("--") {
        out.push_str(&rest[..at]);
        rest = &rest[at..];
        for (flag, name) in PYTHON_NAMES {
            let whole = rest.strip_prefix(flag).is_some_and(|after| {
                !after.starts_with(|c: char| c.is_ascii_alphanumeric() || c == '-')
            });
            if whole {
                out.push_str(name);
                rest = &rest[flag.len()..];
                continue 'scan;
            }
        }
        out.push_str("--");
        rest = &rest[2..];
    }
    out.push_str(rest);
    out
}

/// The Python exception for a library error, with the library's message.
pub fn to_py(error: Error) -> PyErr {
    let message = python_names(&vgg::error::one_line(&error.to_string()));
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

#[cfg(test)]
mod tests {
    use super::python_names;

    #[test]
    fn flags_become_python_arguments() {
        assert_eq!(
            python_names("--resize and --crop must be at least 1"),
            "resize and crop must be at least 1"
        );
        assert_eq!(
            python_names("--batch-size 0 (lower --memory-limit / vgg.set_memory_limit(), or x)"),
            "batch_size 0 (lower vgg.set_memory_limit(), or x)"
        );
        assert_eq!(
            python_names("give --weights FILE or --calib DIR"),
            "give weights or Model.calibrate(images)"
        );
    }

    #[test]
    fn other_flags_and_longer_names_stay() {
        assert_eq!(python_names("--pooling --out x --"), "--pooling --out x --");
        assert_eq!(python_names("`--engine reference`"), "`--engine reference`");
        assert_eq!(python_names("--cfg,--pool:"), "cfg,pool:");
    }
}
