//! The library's error type: every message says what was wrong and what is accepted.

/// Errors from building, running and describing VGG models.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("unknown arch `{name}`{}; valid: {valid}, custom", closest.as_ref().map(|c| format!(" (did you mean `{c}`?)")).unwrap_or_default())]
    UnknownArch {
        name: String,
        valid: String,
        closest: Option<String>,
    },

    #[error("bad --cfg `{cfg}`: {why} (expected channel counts and `M` pools, e.g. 32,M,64,M)")]
    BadCfg { cfg: String, why: String },

    #[error("bad model config: {0}")]
    BadConfig(String),

    #[error("bad input shape `{text}`: {why}")]
    BadInputShape { text: String, why: String },

    #[error("{model} needs at least {min}×{min} input: {pools}; got {height}×{width}")]
    InputTooSmall {
        model: String,
        min: usize,
        pools: String,
        height: usize,
        width: usize,
    },

    #[error("{model} expects {expected} input channels, got {got}")]
    ChannelMismatch {
        model: String,
        expected: usize,
        got: usize,
    },

    #[error("`{key}` has shape {got:?}, the model expects {expected:?}")]
    ShapeMismatch {
        key: String,
        expected: Vec<usize>,
        got: Vec<usize>,
    },

    #[error("{0}")]
    BadArgument(String),

    /// Writing an output failed; `path` is the file the caller asked for (never the
    /// temporary file an atomic write goes through).
    #[error("cannot write {path}: {source}")]
    Write {
        path: String,
        source: std::io::Error,
    },

    /// The CPU engine refused a network or a buffer.
    #[error("engine: {0}")]
    Engine(#[from] crate::engine::EngineError),

    #[error("{what} {path}: {source}")]
    Io {
        what: &'static str,
        path: String,
        source: std::io::Error,
    },

    #[error("{path}: {why}")]
    BadImage { path: String, why: String },

    #[error("{path}: {why}")]
    BadWeights { path: String, why: String },

    /// A checkpoint that does not fit the model: the report (a `weights::load::LoadReport`,
    /// see `Error::load_report`) lists every difference. Held as a trait object so that
    /// this module depends on no other.
    #[error("{0}")]
    StateDictMismatch(Box<dyn std::error::Error + Send + Sync>),

    /// A request for more memory than the budget allows (`need`: None when its size
    /// overflows 64 bits), `held` of it taken by compiled engines still alive; see
    /// [`crate::limits`].
    #[error("{what} {}", over_budget(*need, *budget, *held))]
    OverBudget {
        what: String,
        need: Option<u64>,
        budget: u64,
        held: u64,
    },

    #[error(transparent)]
    Candle(#[from] candle_core::Error),
}

impl Error {
    pub fn io(path: &std::path::Path, what: &'static str, source: std::io::Error) -> Self {
        Error::Io {
            what,
            path: path.display().to_string(),
            source,
        }
    }
}

impl Error {
    /// An over-budget error with `request` (the flags or file behind it) put in front of
    /// its description; any other error unchanged.
    pub fn for_request(self, request: impl FnOnce() -> String) -> Self {
        match self {
            Error::OverBudget {
                what,
                need,
                budget,
                held,
            } => Error::OverBudget {
                what: format!("{}{what}", request()),
                need,
                budget,
                held,
            },
            other => other,
        }
    }

    /// A failed write of `path`.
    pub fn write(path: &std::path::Path, source: std::io::Error) -> Self {
        Error::Write {
            path: path.display().to_string(),
            source,
        }
    }

    /// A failed write of `path` for a reason that is not an I/O error (an encoder's).
    pub fn cannot_encode(path: &std::path::Path, why: impl std::fmt::Display) -> Self {
        Self::write(path, std::io::Error::other(why.to_string()))
    }
}

fn over_budget(need: Option<u64>, budget: u64, held: u64) -> String {
    let held = match held {
        0 => String::new(),
        held => format!(
            ", {} of which compiled models still alive hold (drop those not needed)",
            human_bytes(held)
        ),
    };
    match need {
        Some(need) => format!(
            "would need {}, over the memory budget of {}{held} (raise it with \
             --memory-limit, VGG_MEMORY_LIMIT or vgg.set_memory_limit(); the default is 3/4 \
             of the memory this process may use)",
            human_bytes(need),
            human_bytes(budget)
        ),
        None => "is too large: its size overflows 64-bit arithmetic".into(),
    }
}

/// `1.5 GiB`-style size for messages (the error messages' own formatting; `limits` re-exports it).
pub fn human_bytes(bytes: u64) -> String {
    const UNITS: [&str; 6] = ["bytes", "KiB", "MiB", "GiB", "TiB", "PiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} bytes")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

/// Longest message [`one_line`] gives: a quoted input (a header, a config) can be huge.
const MAX_MESSAGE: usize = 1000;

/// `text` as one line for a terminal: line breaks from a decoder's or parser's message
/// become spaces, and past [`MAX_MESSAGE`] characters it is cut with `…`.
pub fn one_line(text: &str) -> String {
    let mut line = text.split_whitespace().collect::<Vec<_>>().join(" ");
    if line.chars().nth(MAX_MESSAGE).is_some() {
        // Room for the `…` within the cap.
        let cut = (line.char_indices().nth(MAX_MESSAGE - 1)).map_or(line.len(), |(i, _)| i);
        line.truncate(cut);
        line.push('…');
    }
    line
}

/// `message` (an error's) as one line about `subject` (a path, an item of a dataset):
/// prefixed with it unless the message names it first already, as an I/O error names its
/// path.
pub fn about(subject: &str, message: &str) -> String {
    let line = one_line(message);
    match line.starts_with(subject) {
        true => line,
        false => one_line(&format!("{subject}: {line}")),
    }
}

/// `a, b, c, … and 7 more`: at most `shown` items of a list in a message, so that a file with
/// millions of entries never makes a message of megabytes.
pub fn capped_list(items: &[String], shown: usize) -> String {
    let mut text = items
        .iter()
        .take(shown)
        .map(String::as_str)
        .collect::<Vec<_>>()
        .join(", ");
    if items.len() > shown {
        text += &format!(", … and {} more", items.len() - shown);
    }
    text
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_are_one_bounded_line() {
        assert_eq!(
            one_line("cannot decode: bad marker\n\n  expected 12 but found 2\n"),
            "cannot decode: bad marker expected 12 but found 2"
        );
        let long = one_line(&format!("bad header {}", "(".repeat(5000)));
        assert_eq!(long.chars().count(), MAX_MESSAGE);
        assert!(long.ends_with('…'));
    }
}
