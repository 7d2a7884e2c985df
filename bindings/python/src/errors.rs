//! The library's errors as Python exceptions: bad checkpoints are `vgg.WeightsError`, missing
//! files `FileNotFoundError`, other I/O `OSError`, requests over the memory budget
//! `MemoryError`, bad arguments and shapes `ValueError`.

use pyo3::exceptions::{
    PyFileNotFoundError, PyMemoryError, PyOSError, PyRuntimeError, PyValueError,
};
use pyo3::{PyErr, create_exception};
use vgg::Error;
use vgg::engine::EngineError;

// Named after the package that exports it (`vgg.WeightsError`): tracebacks show that name,
// and pickle (a worker process's exception) finds the class there.
create_exception!(
    vgg,
    WeightsError,
    PyValueError,
    "A checkpoint that cannot be read, or that does not fit the model."
);

/// `Result` with the library's error converted on the way out.
pub type PyResult<T> = Result<T, PyErr>;

/// The library's words for the command line's flags (first) and what a Python caller
/// passes instead: the messages are shared, the spelling of their arguments is not.
const PYTHON_NAMES: [(&str, &str); 21] = [
    // Before `--arch NAME` (see `python_names`).
    ("--arch auto", "vgg.load(path)"),
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
/// (`--batch-size` → `batch_size`, `--crop 0` → `crop=0`): a whole flag at a time
/// (`--pool` never inside `--pooling`), only where a flag can begin (not inside a path
/// such as `run--crop/`), and never inside backticks, which quote commands to run.
pub fn python_names(message: &str) -> String {
    let mut out = String::with_capacity(message.len());
    let mut quoted = false;
    let mut rest = message;
    while let Some(c) = rest.chars().next() {
        let starts_flag = !quoted
            && rest.starts_with("--")
            && out.chars().last().is_none_or(|p| " ([,'\"".contains(p));
        match starts_flag.then(|| python_name(rest)).flatten() {
            Some((name, len)) => {
                out.push_str(name);
                rest = &rest[len..];
                if rest.starts_with(' ') && starts_number(&rest[1..]) {
                    out.push('=');
                    rest = &rest[1..];
                }
            }
            None if starts_flag && rest.starts_with("--arch ") => {
                // `--arch vgg11_bn` names a function of `vgg.models`.
                out.push_str("vgg.models.");
                rest = &rest["--arch ".len()..];
            }
            None => {
                quoted ^= c == '`';
                out.push(c);
                rest = &rest[c.len_utf8()..];
            }
        }
    }
    out
}

/// Whether `text` starts with a number (`7`, `-1`, `0.5`): a flag's value.
fn starts_number(text: &str) -> bool {
    let unsigned = text.strip_prefix('-').unwrap_or(text);
    unsigned.starts_with(|c: char| c.is_ascii_digit())
}

/// The Python name of the flag `text` starts with, and the flag's length.
fn python_name(text: &str) -> Option<(&'static str, usize)> {
    PYTHON_NAMES.iter().find_map(|&(flag, name)| {
        let after = text.strip_prefix(flag)?;
        let whole = !after.starts_with(|c: char| c.is_ascii_alphanumeric() || c == '-');
        whole.then_some((name, flag.len()))
    })
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
            "batch_size=0 (lower vgg.set_memory_limit(), or x)"
        );
        assert_eq!(
            python_names("give --weights FILE or --calib DIR; --precision int8"),
            "give weights or Model.calibrate(images); precision int8"
        );
        assert_eq!(
            python_names("custom --cfg 64,M --hidden 8 --pool 7"),
            "custom cfg=64,M hidden=8 pool=7"
        );
    }

    #[test]
    fn archs_and_negative_values_read_as_python() {
        assert_eq!(
            python_names("looks like vgg11_bn: use --arch vgg11_bn or --arch auto"),
            "looks like vgg11_bn: use vgg.models.vgg11_bn or vgg.load(path)"
        );
        assert_eq!(
            python_names("--arch custom --cfg 8,M --batch-norm --pool 7 (or --arch auto)"),
            "vgg.models.custom cfg=8,M batch_norm pool=7 (or vgg.load(path))"
        );
        assert_eq!(python_names("--opset -1: expected"), "opset=-1: expected");
        assert_eq!(python_names("--arch-name x"), "--arch-name x");
    }

    #[test]
    fn other_flags_longer_names_paths_and_quoted_commands_stay() {
        assert_eq!(python_names("--pooling --out x --"), "--pooling --out x --");
        assert_eq!(
            python_names("run `vgg quantize W --calib DIR --out Q`, or --calib DIR"),
            "run `vgg quantize W --calib DIR --out Q`, or Model.calibrate(images)"
        );
        assert_eq!(
            python_names("/data/run--crop/x.pth"),
            "/data/run--crop/x.pth"
        );
        assert_eq!(python_names("(--cfg,--pool: é)"), "(cfg,pool: é)");
    }
}
