//! torchinfo 1.8.0's table, byte for byte (see `shared/spec/summary.md`).

use std::str::FromStr;

use crate::error::Error;
use crate::summary::trace::{BYTES_PER_VALUE, Row, Summary};
use crate::summary::{python_list, with_commas};

/// Python's `sys.getsizeof` of a tensor's storage adds this much object overhead.
const STORAGE_OVERHEAD_BYTES: u64 = 56;
const COLUMN_WIDTH: usize = 25;

/// torchinfo's optional columns, by their `col_names` spelling.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Column {
    InputSize,
    OutputSize,
    NumParams,
    ParamsPercent,
    KernelSize,
    MultAdds,
    Trainable,
}

impl Column {
    pub const ALL: [Column; 7] = [
        Column::InputSize,
        Column::OutputSize,
        Column::NumParams,
        Column::ParamsPercent,
        Column::KernelSize,
        Column::MultAdds,
        Column::Trainable,
    ];

    /// torchinfo's default columns.
    pub const DEFAULT: [Column; 2] = [Column::OutputSize, Column::NumParams];

    pub fn name(self) -> &'static str {
        match self {
            Column::InputSize => "input_size",
            Column::OutputSize => "output_size",
            Column::NumParams => "num_params",
            Column::ParamsPercent => "params_percent",
            Column::KernelSize => "kernel_size",
            Column::MultAdds => "mult_adds",
            Column::Trainable => "trainable",
        }
    }

    fn title(self) -> &'static str {
        match self {
            Column::InputSize => "Input Shape",
            Column::OutputSize => "Output Shape",
            Column::NumParams => "Param #",
            Column::ParamsPercent => "Param %",
            Column::KernelSize => "Kernel Shape",
            Column::MultAdds => "Mult-Adds",
            Column::Trainable => "Trainable",
        }
    }
}

impl FromStr for Column {
    type Err = Error;

    fn from_str(name: &str) -> Result<Self, Error> {
        Column::ALL
            .into_iter()
            .find(|c| c.name() == name.trim())
            .ok_or_else(|| {
                let valid: Vec<&str> = Column::ALL.iter().map(|c| c.name()).collect();
                Error::BadArgument(format!(
                    "unknown column `{name}`; valid: {}",
                    valid.join(", ")
                ))
            })
    }
}

/// torchinfo's default `depth`.
pub const DEFAULT_DEPTH: usize = 3;

/// Table options, as torchinfo's `col_names` and `depth`.
#[derive(Debug, Clone)]
pub struct Options {
    pub columns: Vec<Column>,
    pub depth: usize,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            columns: Column::DEFAULT.to_vec(),
            depth: DEFAULT_DEPTH,
        }
    }
}

/// Renders `torchinfo.summary(model, input_size=(N, C, H, W), col_names, depth)`.
pub fn render(summary: &Summary, options: &Options) -> String {
    let names = row_names(summary);
    let name_width = name_column_width(summary, &names);
    let divider = "=".repeat(name_width + COLUMN_WIDTH * options.columns.len());
    let total = summary.total_params();
    let trainable = summary.trainable_params();
    let format_row = |name: &str, cells: &[String]| {
        let mut line = format!("{name:<name_width$} ");
        for cell in cells {
            line.push_str(&format!("{cell:<COLUMN_WIDTH$} "));
        }
        line.trim_end().to_string() + "\n"
    };

    let mut out = format!("{divider}\n");
    let titles: Vec<String> = options
        .columns
        .iter()
        .map(|c| c.title().to_string())
        .collect();
    out += &format_row("Layer (type:depth-idx)", &titles);
    out += &format!("{divider}\n");
    for (row, name) in summary.rows.iter().zip(&names) {
        if row.depth > options.depth {
            continue;
        }
        let at_max_depth = row.depth == options.depth;
        let cells: Vec<String> = options
            .columns
            .iter()
            .map(|&c| cell(summary, row, c, at_max_depth, total))
            .collect();
        out += &format_row(&format!("{}{name}", tree_prefix(row.depth)), &cells);
    }
    out += &format!("{divider}\n");
    out += &format!("Total params: {}\n", with_commas(total as i128));
    out += &format!("Trainable params: {}\n", with_commas(trainable as i128));
    out += &format!(
        "Non-trainable params: {}\n",
        with_commas((total - trainable) as i128)
    );
    out += &format!(
        "Total mult-adds{}\n{divider}\n",
        readable(summary.total_mult_adds())
    );

    let input = summary.input_bytes() + STORAGE_OVERHEAD_BYTES;
    let outputs: u64 = summary
        .leaves()
        .filter(|r| r.params > 0)
        .map(|r| 2 * r.output_elements(summary.batch) * BYTES_PER_VALUE)
        .sum();
    let params = total as u64 * BYTES_PER_VALUE;
    for (label, bytes) in [
        ("Input size (MB)", input),
        ("Forward/backward pass size (MB)", outputs),
        ("Params size (MB)", params),
        ("Estimated Total Size (MB)", input + outputs + params),
    ] {
        out += &format!("{label}: {:.2}\n", bytes as f64 / 1e6);
    }
    out += &divider;
    out + "\n"
}

/// `ClassName: depth-idx`, with idx counted per depth across the whole table.
fn row_names(summary: &Summary) -> Vec<String> {
    let mut counters: Vec<usize> = Vec::new();
    summary
        .rows
        .iter()
        .map(|row| {
            if row.depth == 0 {
                return row.class_name.to_string();
            }
            if counters.len() <= row.depth {
                counters.resize(row.depth + 1, 0);
            }
            counters[row.depth] += 1;
            format!("{}: {}-{}", row.class_name, row.depth, counters[row.depth])
        })
        .collect()
}

/// 40, or wider (a multiple of 5) when a name and its indentation would not fit.
fn name_column_width(summary: &Summary, names: &[String]) -> usize {
    let longest = summary
        .rows
        .iter()
        .zip(names)
        .map(|(row, name)| name.chars().count() + row.depth * 5 + 1)
        .max()
        .unwrap_or(0);
    if longest >= 40 {
        longest.div_ceil(5) * 5
    } else {
        40
    }
}

fn tree_prefix(depth: usize) -> String {
    match depth {
        0 => String::new(),
        1 => "├─".to_string(),
        d => "│    ".repeat(d - 1) + "└─",
    }
}

fn cell(summary: &Summary, row: &Row, column: Column, at_max_depth: bool, total: usize) -> String {
    let with_batch = |dims: &[usize]| {
        python_list(std::iter::once(summary.batch as i64).chain(dims.iter().map(|&d| d as i64)))
    };
    // Containers hold no parameters of their own ("leftover" parameters are zero in VGG);
    // at the maximum depth they stand for everything inside them.
    let shown_params = if row.is_leaf || at_max_depth {
        row.params
    } else {
        0
    };
    match column {
        Column::InputSize => with_batch(&row.input_shape),
        Column::OutputSize => with_batch(&row.output_shape),
        Column::KernelSize => row.kernel_shape.clone().unwrap_or_else(|| "--".into()),
        Column::NumParams if shown_params == 0 => "--".to_string(),
        Column::NumParams if row.trainable_params == 0 => {
            format!("({})", with_commas(shown_params as i128))
        }
        Column::NumParams => with_commas(shown_params as i128),
        Column::ParamsPercent if shown_params == 0 || total == 0 => "     --".to_string(),
        Column::ParamsPercent => {
            let percent = format!("{:.2}%", shown_params as f64 / total as f64 * 100.0);
            format!("{percent:>7}")
        }
        Column::MultAdds if row.params == 0 || !(row.is_leaf || at_max_depth) => "--".into(),
        Column::MultAdds => with_commas(row.mult_adds as i128),
        Column::Trainable => match (row.params, row.trainable_params) {
            (0, _) => "--".to_string(),
            (_, 0) => "False".to_string(),
            (p, t) if p == t => "True".to_string(),
            _ => "Partial".to_string(),
        },
    }
}

/// `Total mult-adds (G): 15.48` — T, G or M, two decimals unless the value is whole.
fn readable(n: u64) -> String {
    let (unit, value) = match n as f64 {
        v if v >= 1e12 => ("T", v / 1e12),
        v if v >= 1e9 => ("G", v / 1e9),
        v => ("M", v / 1e6),
    };
    if value.fract() == 0.0 {
        format!(" ({unit}): {}", with_commas(value as i128))
    } else {
        let text = format!("{value:.2}");
        let (whole, decimals) = text.split_once('.').expect("two decimals");
        let whole: i128 = whole.parse().expect("digits");
        format!(" ({unit}): {}.{decimals}", with_commas(whole))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mult_adds_units() {
        assert_eq!(readable(15_483_862_016), " (G): 15.48");
        assert_eq!(readable(352_154_600), " (M): 352.15");
        assert_eq!(readable(2_000_000), " (M): 2");
        assert_eq!(readable(0), " (M): 0");
        assert_eq!(readable(1_234_560_000_000_000), " (T): 1,234.56");
    }

    #[test]
    fn unknown_column_lists_valid_ones() {
        let err = "params".parse::<Column>().unwrap_err().to_string();
        assert!(err.contains("num_params, params_percent"), "{err}");
    }
}
