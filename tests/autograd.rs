//! The training ops of `vgg::ops` against candle's reference ops: forward
//! values and every gradient, element by element, on seeded random data.

mod common;

use candle_core::{D, DType, Device, Result, Tensor, Var};
use common::assert_close;
use vgg::ops::{batch_norm_train, conv3x3, linear, max_pool2x2, relu};

/// Deterministic values in [-1, 1).
fn random(len: usize, seed: u64) -> Vec<f32> {
    let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (state >> 40) as f32 / (1u64 << 23) as f32 - 1.0
        })
        .collect()
}

fn var(dims: &[usize], seed: u64) -> Result<Var> {
    Var::from_vec(random(dims.iter().product(), seed), dims, &Device::Cpu)
}

/// `Σ y · r` for a fixed random `r`, so that every output element has its own gradient.
fn weighted_sum(y: &Tensor, seed: u64) -> Result<Tensor> {
    let r = Tensor::from_vec(random(y.elem_count(), seed), y.dims(), y.device())?;
    (y * r)?.sum_all()
}

/// Checks the output and the gradients w.r.t. `x_leaf`, `weight`, `bias` of
/// `conv3x3(x)` (x derived from `x_leaf`) against candle's conv2d + broadcast_add.
fn check_conv(x_leaf: &Var, x: &Tensor, weight: &Var, bias: &Var, label: &str) -> Result<()> {
    let ours = conv3x3(x, weight, bias)?;
    let reference = x
        .conv2d(weight, 1, 1, 1, 1)?
        .broadcast_add(&bias.reshape((1, (), 1, 1))?)?;
    assert_close(&ours, &reference, 0.0, 1e-4, &format!("{label} output"));
    let ours = weighted_sum(&ours, 99)?.backward()?;
    let reference = weighted_sum(&reference, 99)?.backward()?;
    for (name, t) in [("dx", x_leaf), ("dw", weight), ("db", bias)] {
        let got = ours.get(t).expect("gradient");
        let want = reference.get(t).expect("reference gradient");
        assert_close(got, want, 0.0, 1e-4, &format!("{label} {name}"));
    }
    Ok(())
}

#[test]
fn conv3x3_matches_candle_values_and_gradients() -> Result<()> {
    let mut seed = 1;
    for (c, k) in [(3, 8), (5, 16), (16, 33), (64, 64)] {
        for (h, w) in [(1, 1), (2, 2), (5, 7), (16, 16)] {
            for n in [1, 3] {
                seed += 3;
                let x = var(&[n, c, h, w], seed)?;
                let weight = var(&[k, c, 3, 3], seed + 1)?;
                let bias = var(&[k], seed + 2)?;
                let label = format!("{n}x{c}x{h}x{w} -> {k}");
                check_conv(&x, x.as_tensor(), &weight, &bias, &label)?;
            }
        }
    }
    Ok(())
}

#[test]
fn conv3x3_takes_non_contiguous_input() -> Result<()> {
    let leaf = var(&[2, 6, 7, 5], 11)?;
    let x = leaf.transpose(2, 3)?;
    assert!(!x.is_contiguous());
    check_conv(
        &leaf,
        &x,
        &var(&[4, 6, 3, 3], 12)?,
        &var(&[4], 13)?,
        "transposed",
    )
}

#[test]
fn conv3x3_falls_back_to_candle_for_f64() -> Result<()> {
    let x = var(&[2, 3, 4, 5], 21)?.to_dtype(DType::F64)?;
    let weight = var(&[4, 3, 3, 3], 22)?.to_dtype(DType::F64)?;
    let bias = var(&[4], 23)?.to_dtype(DType::F64)?;
    let ours = conv3x3(&x, &weight, &bias)?;
    let reference = x
        .conv2d(&weight, 1, 1, 1, 1)?
        .broadcast_add(&bias.reshape((1, (), 1, 1))?)?;
    assert_eq!(ours.dtype(), DType::F64);
    let diff = (ours - reference)?.abs()?.max_all()?.to_scalar::<f64>()?;
    assert!(diff < 1e-12, "f64 fallback differs by {diff}");
    Ok(())
}

#[test]
fn conv3x3_rejects_mismatched_weights() -> Result<()> {
    let x = var(&[1, 3, 4, 4], 31)?;
    assert!(
        conv3x3(
            &x,
            var(&[4, 2, 3, 3], 32)?.as_tensor(),
            var(&[4], 33)?.as_tensor()
        )
        .is_err()
    );
    assert!(
        conv3x3(
            &x,
            var(&[4, 3, 3, 3], 32)?.as_tensor(),
            var(&[5], 33)?.as_tensor()
        )
        .is_err()
    );
    Ok(())
}

/// Checks `max_pool2x2` on `x`: values equal to candle's `max_pool2d(2)`, gradient
/// equal to `ops::tensor_pool::max_pool2d`'s, exactly.
fn check_pool(x: &Var, label: &str) -> Result<()> {
    let ours = max_pool2x2(x)?;
    let candle = x.max_pool2d(2)?;
    assert_eq!(ours.dims(), candle.dims(), "{label}: shapes");
    let values = |t: &Tensor| t.flatten_all()?.to_vec1::<f32>();
    assert_eq!(values(&ours)?, values(&candle)?, "{label}: values");
    let reference = vgg::ops::tensor_pool::max_pool2d(x).expect("reference pool");
    let grad = |y: &Tensor| -> Result<Vec<f32>> {
        let grads = weighted_sum(y, 7)?.backward()?;
        values(grads.get(x).expect("gradient"))
    };
    assert_eq!(grad(&ours)?, grad(&reference)?, "{label}: gradients");
    Ok(())
}

#[test]
fn max_pool_matches_candle_values_and_first_max_gradients() -> Result<()> {
    for (i, dims) in [
        [2, 3, 8, 8],
        [1, 2, 5, 7],
        [3, 4, 3, 2],
        [1, 1, 2, 2],
        [1, 2, 3, 6],
    ]
    .iter()
    .enumerate()
    {
        let x = var(dims, 40 + i as u64)?;
        check_pool(&x, &format!("random {dims:?}"))?;
        // Few distinct values, half of them zero as after ReLU: ties everywhere.
        let coarse = (x.as_tensor() * 2.0)?.round()?.relu()?;
        check_pool(&Var::from_tensor(&coarse)?, &format!("ties {dims:?}"))?;
    }
    Ok(())
}

#[test]
fn max_pool_sends_all_zero_windows_gradient_to_the_first_cell() -> Result<()> {
    let x = Var::zeros((1, 1, 4, 4), DType::F32, &Device::Cpu)?;
    let grads = max_pool2x2(&x)?.sum_all()?.backward()?;
    let grad = grads.get(&x).expect("gradient").squeeze(0)?.squeeze(0)?;
    let first = Tensor::new(&[[1f32, 0., 1., 0.], [0., 0., 0., 0.]], &Device::Cpu)?;
    let want = Tensor::cat(&[&first, &first], 0)?;
    assert_eq!(grad.to_vec2::<f32>()?, want.to_vec2::<f32>()?);
    assert_eq!(grad.sum(D::Minus1)?.to_vec1::<f32>()?, [2.0, 0.0, 2.0, 0.0]);
    Ok(())
}

#[test]
fn max_pool_rejects_maps_smaller_than_the_window() -> Result<()> {
    assert!(max_pool2x2(var(&[1, 2, 1, 6], 50)?.as_tensor()).is_err());
    assert!(max_pool2x2(var(&[1, 2, 6, 1], 51)?.as_tensor()).is_err());
    Ok(())
}

/// Checks the output of `ours` and `reference` (same inputs) and the gradients of
/// `Σ out·r` w.r.t. every variable in `vars`.
fn check_grads(
    ours: &Tensor,
    reference: &Tensor,
    vars: &[(&str, &Var)],
    label: &str,
) -> Result<()> {
    assert_close(ours, reference, 0.0, 1e-4, &format!("{label} output"));
    let ours = weighted_sum(ours, 5)?.backward()?;
    let reference = weighted_sum(reference, 5)?.backward()?;
    for (name, v) in vars {
        let got = ours.get(v).expect("gradient");
        let want = reference.get(v).expect("reference gradient");
        assert_close(got, want, 0.0, 1e-4, &format!("{label} {name}"));
    }
    Ok(())
}

#[test]
fn batch_norm_matches_candle_values_statistics_and_gradients() -> Result<()> {
    for (i, dims) in [[2, 3, 4, 5], [3, 16, 1, 1], [1, 4, 1, 2], [4, 8, 9, 7]]
        .iter()
        .enumerate()
    {
        let seed = 60 + 3 * i as u64;
        // An offset mean, as real activations have, so cancellation would show.
        let x = Var::from_tensor(&(var(dims, seed)?.as_tensor() + 3.0)?)?;
        let (weight, bias) = (var(&[dims[1]], seed + 1)?, var(&[dims[1]], seed + 2)?);
        let (y, mean, var) = batch_norm_train(&x, &weight, &bias, 1e-5)?;
        let want_mean = x.mean_keepdim((0, 2, 3))?;
        let centred = x.broadcast_sub(&want_mean)?;
        let want_var = centred.sqr()?.mean_keepdim((0, 2, 3))?;
        let per_channel = |t: &Tensor| t.reshape((1, (), 1, 1));
        let reference = centred
            .broadcast_div(&(&want_var + 1e-5)?.sqrt()?)?
            .broadcast_mul(&per_channel(&weight)?)?
            .broadcast_add(&per_channel(&bias)?)?;
        let label = format!("batch norm {dims:?}");
        assert_close(
            &mean,
            &want_mean.flatten_all()?,
            0.0,
            1e-4,
            &format!("{label} mean"),
        );
        assert_close(
            &var,
            &want_var.flatten_all()?,
            0.0,
            1e-4,
            &format!("{label} var"),
        );
        let vars = [("dx", &x), ("dw", &weight), ("db", &bias)];
        check_grads(&y, &reference, &vars, &label)?;
    }
    Ok(())
}

#[test]
fn linear_matches_candle_values_and_gradients() -> Result<()> {
    for (i, (n, inputs, outputs)) in [(1, 1, 1), (3, 17, 5), (64, 300, 40)]
        .into_iter()
        .enumerate()
    {
        let seed = 80 + 3 * i as u64;
        let x = var(&[n, inputs], seed)?;
        let (weight, bias) = (
            var(&[outputs, inputs], seed + 1)?,
            var(&[outputs], seed + 2)?,
        );
        let ours = linear(&x, &weight, &bias)?;
        let reference = x.matmul(&weight.t()?)?.broadcast_add(&bias.unsqueeze(0)?)?;
        let vars = [("dx", &x), ("dw", &weight), ("db", &bias)];
        check_grads(
            &ours,
            &reference,
            &vars,
            &format!("linear {n}x{inputs}->{outputs}"),
        )?;
    }
    Ok(())
}

/// Values as candle's `relu`; gradient as PyTorch's: zero where the output is 0,
/// including `x = 0` exactly (where candle's passes it through).
#[test]
fn relu_matches_candle_values_and_pytorch_gradient() -> Result<()> {
    let dims = [3, 5, 70, 70];
    let x = Var::from_tensor(&(var(&dims, 90)?.as_tensor() * 2.0)?.round()?)?;
    let ours = relu(&x)?;
    let values = |t: &Tensor| t.flatten_all()?.to_vec1::<f32>();
    assert_eq!(values(&ours)?, values(&x.relu()?)?);
    let r = Tensor::from_vec(random(x.elem_count(), 91), &dims, &Device::Cpu)?;
    let grads = (&ours * &r)?.sum_all()?.backward()?;
    let got = values(grads.get(&x).expect("gradient"))?;
    let want: Vec<f32> = values(&x)?
        .iter()
        .zip(values(&r)?)
        .map(|(&v, g)| if v > 0.0 { g } else { 0.0 })
        .collect();
    assert!(values(&x)?.contains(&0.0), "the input has exact zeros");
    assert_eq!(got, want);
    Ok(())
}
