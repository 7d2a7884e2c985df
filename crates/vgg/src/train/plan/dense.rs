//! The classifier's side of the training plan, on `[N][features]` rows: linear layers,
//! ReLU, dropout, and the cross-entropy loss with its gradient.

use rayon::prelude::*;

use crate::engine::gemm::{Mat, matmul_on};

/// Elements per parallel task of the element-wise passes.
const TASK_LEN: usize = 1 << 14;

fn threads() -> usize {
    rayon::current_num_threads()
}

/// `y[N][out] = x[N][in]·Wᵀ + b`, then ReLU when `relu`.
pub(super) fn linear(x: &[f32], n: usize, (w, b): (&[f32], &[f32]), relu: bool, y: &mut [f32]) {
    let (outputs, inputs) = (b.len(), w.len() / b.len());
    let y = &mut y[..n * outputs];
    y.chunks_exact_mut(outputs)
        .for_each(|row| row.copy_from_slice(b));
    let (x, w) = (
        Mat::row_major(x, n, inputs),
        Mat::row_major(w, outputs, inputs),
    );
    matmul_on(x, w.t(), y, true, threads());
    if relu {
        relu_in_place(y);
    }
}

/// The linear layer's weight gradient `dyᵀ·x` (`[out][in]`) and bias gradient `Σₙ dy`.
pub(super) fn linear_param_grads(x: &[f32], dy: &[f32], n: usize, dw: &mut [f32], db: &mut [f32]) {
    let (outputs, inputs) = (db.len(), dw.len() / db.len());
    let (dy_m, x) = (Mat::row_major(dy, n, outputs), Mat::row_major(x, n, inputs));
    matmul_on(dy_m.t(), x, dw, false, threads());
    for (o, d) in db.iter_mut().enumerate() {
        *d = (0..n).map(|i| f64::from(dy[i * outputs + o])).sum::<f64>() as f32;
    }
}

/// The linear layer's input gradient `dy·W` (`[N][in]`).
pub(super) fn linear_input_grad(dy: &[f32], n: usize, w: &[f32], outputs: usize, dx: &mut [f32]) {
    let inputs = w.len() / outputs;
    let (dy, w) = (
        Mat::row_major(dy, n, outputs),
        Mat::row_major(w, outputs, inputs),
    );
    matmul_on(dy, w, &mut dx[..n * inputs], false, threads());
}

pub(super) fn relu_in_place(y: &mut [f32]) {
    y.par_chunks_mut(TASK_LEN)
        .for_each(|y| y.iter_mut().for_each(|v| *v = crate::engine::relu(*v)));
}

/// ReLU's backward pass in place: the gradient survives where the output `y` is positive
/// (PyTorch's `threshold_backward`: 0 at `y = 0`).
pub(super) fn relu_grad(dy: &mut [f32], y: &[f32]) {
    dy.par_chunks_mut(TASK_LEN)
        .zip(y.par_chunks(TASK_LEN))
        .for_each(|(dy, y)| {
            for (g, &v) in dy.iter_mut().zip(y) {
                if v <= 0.0 {
                    *g = 0.0;
                }
            }
        });
}

/// `x *= mask`, elementwise: dropout's forward and backward pass alike.
pub(super) fn scale_by(x: &mut [f32], mask: &[f32]) {
    x.par_chunks_mut(TASK_LEN)
        .zip(mask.par_chunks(TASK_LEN))
        .for_each(|(x, m)| x.iter_mut().zip(m).for_each(|(v, m)| *v *= m));
}

/// Mean cross-entropy of `logits` `[N][K]` against `targets` with label smoothing ε (as
/// `F.cross_entropy(label_smoothing=ε)`), and its gradient
/// `(softmax − (1 − ε)·onehot − ε/K) / N` in `dlogits`.
pub(super) fn cross_entropy(
    logits: &[f32],
    targets: &[u32],
    smoothing: f64,
    dlogits: &mut [f32],
) -> f64 {
    let (n, k) = (targets.len(), logits.len() / targets.len().max(1));
    let mut loss = 0.0f64;
    for ((row, grad), &target) in logits
        .chunks_exact(k)
        .zip(dlogits.chunks_exact_mut(k))
        .zip(targets)
    {
        let max = row.iter().fold(f32::NEG_INFINITY, |m, &v| m.max(v));
        let sum: f64 = row.iter().map(|&v| f64::from(v - max).exp()).sum();
        let log_sum = sum.ln();
        let log_prob = |v: f32| f64::from(v - max) - log_sum;
        let mean_neg_log = -row.iter().map(|&v| log_prob(v)).sum::<f64>() / k as f64;
        loss += (1.0 - smoothing) * -log_prob(row[target as usize]) + smoothing * mean_neg_log;
        for (j, (g, &v)) in grad.iter_mut().zip(row).enumerate() {
            let hit = if j == target as usize {
                1.0 - smoothing
            } else {
                0.0
            };
            *g = ((log_prob(v).exp() - hit - smoothing / k as f64) / n as f64) as f32;
        }
    }
    loss / n as f64
}
