//! torchsummary 1.5.1's table, byte for byte (see `shared/spec/summary.md`).

use std::fmt::Write;

use crate::summary::trace::{BYTES_PER_VALUE, Summary};
use crate::summary::{python_list, with_commas};

const MIB: f64 = 1024.0 * 1024.0;

/// Renders `torchsummary.summary(model, (C, H, W), batch_size)`. `batch_label` is the
/// `batch_size` argument: `-1` (the tool's default) or the batch size to print.
pub fn render(summary: &Summary, batch_label: i64) -> String {
    let dashes = "-".repeat(64);
    let equals = "=".repeat(64);
    let mut out = String::new();
    let mut line = |text: &str| {
        out.push_str(text);
        out.push('\n');
    };
    line(&dashes);
    line(&row("Layer (type)", "Output Shape", "Param #"));
    line(&equals);

    let mut output_elements: i64 = 0;
    for (k, r) in summary.leaves().enumerate() {
        let shape: Vec<i64> = std::iter::once(batch_label)
            .chain(r.output_shape.iter().map(|&d| d as i64))
            .collect();
        output_elements += shape.iter().product::<i64>();
        let name = format!("{}-{}", r.class_name, k + 1);
        line(&row(
            &name,
            &python_list(shape),
            &with_commas(r.params as i128),
        ));
    }
    let total = summary.total_params();
    let trainable = summary.trainable_params();
    let values_per_image: usize = summary.input.iter().product();
    let input_mb = (values_per_image as f64 * batch_label as f64 * 4.0 / MIB).abs();
    let output_mb = (2.0 * output_elements as f64 * BYTES_PER_VALUE as f64 / MIB).abs();
    let params_mb = (total as f64 * BYTES_PER_VALUE as f64 / MIB).abs();

    line(&equals);
    line(&format!("Total params: {}", with_commas(total as i128)));
    line(&format!(
        "Trainable params: {}",
        with_commas(trainable as i128)
    ));
    line(&format!(
        "Non-trainable params: {}",
        with_commas((total - trainable) as i128)
    ));
    line(&dashes);
    let mut sizes = String::new();
    for (label, mb) in [
        ("Input size (MB)", input_mb),
        ("Forward/backward pass size (MB)", output_mb),
        ("Params size (MB)", params_mb),
        (
            "Estimated Total Size (MB)",
            input_mb + output_mb + params_mb,
        ),
    ] {
        writeln!(sizes, "{label}: {mb:.2}").expect("writing to a String");
    }
    out.push_str(&sizes);
    out.push_str(&dashes);
    out.push('\n');
    out
}

fn row(name: &str, shape: &str, params: &str) -> String {
    format!("{name:>20}  {shape:>25} {params:>15}")
}
