//! The summary as data: every row and the totals, for scripts and plots.

use serde::Serialize;

use crate::summary::trace::{BYTES_PER_VALUE, Summary};

#[derive(Serialize)]
struct JsonRow<'a> {
    name: String,
    #[serde(rename = "type")]
    class_name: &'a str,
    key_prefix: &'a str,
    depth: usize,
    is_leaf: bool,
    input_shape: Vec<usize>,
    output_shape: Vec<usize>,
    kernel_shape: Option<&'a str>,
    params: usize,
    trainable_params: usize,
    trainable: bool,
    mult_adds: u64,
    macs: u64,
    output_bytes: u64,
}

#[derive(Serialize)]
struct Totals {
    params: usize,
    trainable_params: usize,
    non_trainable_params: usize,
    mult_adds: u64,
    macs: u64,
    gflops: f64,
    input_bytes: u64,
    activation_bytes: u64,
    param_bytes: u64,
}

#[derive(Serialize)]
struct JsonSummary<'a> {
    model: &'a str,
    input_shape: [usize; 4],
    rows: Vec<JsonRow<'a>>,
    totals: Totals,
}

/// Pretty-printed JSON; shapes include the batch dimension.
pub fn render(summary: &Summary) -> String {
    let with_batch = |dims: &[usize]| [&[summary.batch][..], dims].concat();
    let rows = summary
        .rows
        .iter()
        .map(|r| JsonRow {
            name: if r.path.is_empty() {
                r.class_name.to_string()
            } else {
                r.path.clone()
            },
            class_name: r.class_name,
            key_prefix: &r.path,
            depth: r.depth,
            is_leaf: r.is_leaf,
            input_shape: with_batch(&r.input_shape),
            output_shape: with_batch(&r.output_shape),
            kernel_shape: r.kernel_shape.as_deref(),
            params: r.params,
            trainable_params: r.trainable_params,
            trainable: r.params > 0 && r.trainable_params == r.params,
            mult_adds: r.mult_adds,
            macs: r.macs,
            output_bytes: r.output_elements(summary.batch) * BYTES_PER_VALUE,
        })
        .collect();
    let params = summary.total_params();
    let trainable = summary.trainable_params();
    let [c, h, w] = summary.input;
    let doc = JsonSummary {
        model: &summary.model,
        input_shape: [summary.batch, c, h, w],
        rows,
        totals: Totals {
            params,
            trainable_params: trainable,
            non_trainable_params: params - trainable,
            mult_adds: summary.total_mult_adds(),
            macs: summary.total_macs(),
            gflops: summary.total_macs() as f64 * 1e-9,
            input_bytes: summary.input_bytes(),
            activation_bytes: summary.activation_bytes(),
            param_bytes: params as u64 * BYTES_PER_VALUE,
        },
    };
    serde_json::to_string_pretty(&doc).expect("summary serialises") + "\n"
}
