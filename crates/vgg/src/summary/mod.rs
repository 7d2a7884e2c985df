//! Model summaries: the rows ([`trace`]) and the printers that reproduce torchsummary 1.5.1,
//! torchinfo 1.8.0 and a JSON form for scripts.

pub mod compare;
pub mod json;
pub mod torchinfo;
pub mod torchsummary;
pub mod trace;

pub use trace::{Channels, Row, Summary};

use crate::error::{Error, Result};
use torchinfo::Column;

/// How a summary is printed.
#[derive(Debug, Clone)]
pub enum Style {
    /// torchsummary's table, printing `batch_label` as the batch (-1, its default, for none).
    Torchsummary {
        batch_label: i64,
    },
    Torchinfo(torchinfo::Options),
    Json,
}

impl Style {
    /// `format` is `torchsummary`, `torchinfo` or `json`; `columns` (torchinfo's `col_names`,
    /// its defaults when `None`) and `depth` apply to torchinfo alone.
    pub fn parse(
        format: &str,
        batch_label: i64,
        columns: Option<&[String]>,
        depth: usize,
    ) -> Result<Self> {
        if format != "torchinfo" && columns.is_some() {
            return Err(Error::BadArgument(
                "columns apply to the torchinfo format".into(),
            ));
        }
        Ok(match format {
            "torchsummary" => Style::Torchsummary { batch_label },
            "json" => Style::Json,
            "torchinfo" => {
                let columns = match columns {
                    Some(names) => names.iter().map(|c| c.parse()).collect::<Result<_>>()?,
                    None => Column::DEFAULT.to_vec(),
                };
                Style::Torchinfo(torchinfo::Options { columns, depth })
            }
            other => {
                return Err(Error::BadArgument(format!(
                    "unknown summary format `{other}`; valid: torchsummary, torchinfo, json"
                )));
            }
        })
    }
}

/// The summary printed in `style`.
pub fn render(summary: &Summary, style: &Style) -> String {
    match style {
        Style::Torchsummary { batch_label } => torchsummary::render(summary, *batch_label),
        Style::Torchinfo(options) => torchinfo::render(summary, options),
        Style::Json => json::render(summary),
    }
}

/// An integer with comma thousands separators, as Python's `f"{n:,}"`.
pub fn with_commas(n: i128) -> String {
    let digits = n.unsigned_abs().to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    if n < 0 { format!("-{out}") } else { out }
}

/// A shape printed as a Python list: `[1, 64, 224, 224]`.
pub fn python_list(dims: impl IntoIterator<Item = i64>) -> String {
    let items: Vec<String> = dims.into_iter().map(|d| d.to_string()).collect();
    format!("[{}]", items.join(", "))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commas_like_python() {
        assert_eq!(with_commas(0), "0");
        assert_eq!(with_commas(999), "999");
        assert_eq!(with_commas(1000), "1,000");
        assert_eq!(with_commas(138_357_544), "138,357,544");
        assert_eq!(with_commas(-1_234_567), "-1,234,567");
    }

    #[test]
    fn two_decimals_round_half_even_on_exact_binary_value() {
        // Python: "%0.2f" % 0.125 == "0.12", "%0.2f" % 0.375 == "0.38", 2.675 -> "2.67".
        assert_eq!(format!("{:.2}", 0.125f64), "0.12");
        assert_eq!(format!("{:.2}", 0.375f64), "0.38");
        assert_eq!(format!("{:.2}", 2.675f64), "2.67");
    }
}
