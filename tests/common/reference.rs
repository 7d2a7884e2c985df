//! Naive references and random networks shared by the integration tests.
#![allow(dead_code)]

use vgg::engine::{FeatureOp, Linear, NetworkSpec};

/// Deterministic uniform values in `[-scale, scale)`.
pub fn random(n: usize, seed: u64, scale: f32) -> Vec<f32> {
    let mut s = seed.wrapping_mul(0x9E3779B97F4A7C15) | 1;
    (0..n)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            ((s >> 40) as f32 / (1u64 << 24) as f32 * 2.0 - 1.0) * scale
        })
        .collect()
}

/// An NCHW tensor shape.
#[derive(Clone, Copy, Debug)]
pub struct Nchw {
    pub n: usize,
    pub c: usize,
    pub h: usize,
    pub w: usize,
}

/// Direct 3×3 pad-1 convolution (NCHW, f64 accumulation) for output channels `ks`.
pub fn conv_ref(
    x: &[f32],
    Nchw { n, c, h, w }: Nchw,
    wt: &[f32],
    b: &[f32],
    k: usize,
    relu: bool,
    ks: std::ops::Range<usize>,
) -> Vec<f32> {
    let mut out = vec![0.0f32; n * k * h * w];
    for ni in 0..n {
        for ko in ks.clone() {
            for y in 0..h {
                for xx in 0..w {
                    let mut s = b[ko] as f64;
                    for ci in 0..c {
                        for ky in 0..3 {
                            let yy = y as isize + ky as isize - 1;
                            if yy < 0 || yy >= h as isize {
                                continue;
                            }
                            for kx in 0..3 {
                                let xi = xx as isize + kx as isize - 1;
                                if xi < 0 || xi >= w as isize {
                                    continue;
                                }
                                s += wt[((ko * c + ci) * 3 + ky) * 3 + kx] as f64
                                    * x[((ni * c + ci) * h + yy as usize) * w + xi as usize] as f64;
                            }
                        }
                    }
                    let v = s as f32;
                    out[((ni * k + ko) * h + y) * w + xx] = if relu { v.max(0.0) } else { v };
                }
            }
        }
    }
    out
}

pub fn maxpool_ref(x: &[f32], n: usize, c: usize, h: usize, w: usize) -> Vec<f32> {
    let (oh, ow) = (h / 2, w / 2);
    let mut out = vec![0.0; n * c * oh * ow];
    for p in 0..n * c {
        for y in 0..oh {
            for xx in 0..ow {
                let at = |dy: usize, dx: usize| x[(p * h + 2 * y + dy) * w + 2 * xx + dx];
                out[(p * oh + y) * ow + xx] = at(0, 0).max(at(0, 1)).max(at(1, 0)).max(at(1, 1));
            }
        }
    }
    out
}

pub fn adaptive_ref(x: &[f32], n: usize, c: usize, h: usize, w: usize, o: usize) -> Vec<f32> {
    let mut out = vec![0.0; n * c * o * o];
    for p in 0..n * c {
        for i in 0..o {
            let (y0, y1) = (i * h / o, ((i + 1) * h).div_ceil(o));
            for j in 0..o {
                let (x0, x1) = (j * w / o, ((j + 1) * w).div_ceil(o));
                let mut s = 0.0f64;
                for y in y0..y1 {
                    for xx in x0..x1 {
                        s += x[(p * h + y) * w + xx] as f64;
                    }
                }
                out[(p * o + i) * o + j] = (s / ((y1 - y0) * (x1 - x0)) as f64) as f32;
            }
        }
    }
    out
}

pub fn linear_ref(x: &[f32], n: usize, l: &LinearRef) -> Vec<f32> {
    let mut out = vec![0.0; n * l.out_features];
    for b in 0..n {
        for o in 0..l.out_features {
            let mut s = l.bias[o] as f64;
            for i in 0..l.in_features {
                s += l.weight[o * l.in_features + i] as f64 * x[b * l.in_features + i] as f64;
            }
            let v = s as f32;
            out[b * l.out_features + o] = if l.relu { v.max(0.0) } else { v };
        }
    }
    out
}

/// Owned copy of a layer for the reference (the plan consumes the spec).
#[derive(Clone)]
pub struct LinearRef {
    pub in_features: usize,
    pub out_features: usize,
    pub weight: Vec<f32>,
    pub bias: Vec<f32>,
    pub relu: bool,
}

#[derive(Clone)]
pub enum OpRef {
    Conv {
        c: usize,
        k: usize,
        w: Vec<f32>,
        b: Vec<f32>,
        relu: bool,
    },
    Pool,
}

/// A random network from a VGG-style config (`0` = max-pool) and its reference copy.
pub fn network(
    cfg: &[usize],
    in_c: usize,
    pool: usize,
    hidden: &[usize],
    seed: u64,
) -> (NetworkSpec, Vec<OpRef>, Vec<LinearRef>) {
    let mut ops = Vec::new();
    let mut c = in_c;
    for (i, &k) in cfg.iter().enumerate() {
        if k == 0 {
            ops.push(OpRef::Pool);
        } else {
            let scale = (6.0 / (9.0 * c as f32)).sqrt();
            ops.push(OpRef::Conv {
                c,
                k,
                w: random(k * c * 9, seed + i as u64, scale),
                b: random(k, seed + 100 + i as u64, 0.1),
                relu: true,
            });
            c = k;
        }
    }
    let mut lins = Vec::new();
    let mut inp = c * pool * pool;
    for (i, &o) in hidden.iter().enumerate() {
        let scale = (3.0 / inp as f32).sqrt();
        lins.push(LinearRef {
            in_features: inp,
            out_features: o,
            weight: random(o * inp, seed + 200 + i as u64, scale),
            bias: random(o, seed + 300 + i as u64, 0.1),
            relu: i + 1 < hidden.len(),
        });
        inp = o;
    }
    let spec = NetworkSpec {
        features: ops
            .iter()
            .map(|op| match op.clone() {
                OpRef::Pool => FeatureOp::MaxPool2x2,
                OpRef::Conv { c, k, w, b, relu } => FeatureOp::Conv3x3 {
                    in_channels: c,
                    out_channels: k,
                    weight: w,
                    bias: b,
                    relu,
                },
            })
            .collect(),
        pool,
        classifier: lins
            .iter()
            .cloned()
            .map(|l| Linear {
                in_features: l.in_features,
                out_features: l.out_features,
                weight: l.weight,
                bias: l.bias,
                relu: l.relu,
            })
            .collect(),
        int8: None,
    };
    (spec, ops, lins)
}

/// Reference forward pass; returns (features after each op, logits).
pub fn forward_ref(
    x: &[f32],
    Nchw { n, c, h, w }: Nchw,
    ops: &[OpRef],
    pool: usize,
    lins: &[LinearRef],
) -> (Vec<Vec<f32>>, Vec<f32>) {
    let (mut cur, mut c, mut h, mut w) = (x.to_vec(), c, h, w);
    let mut acts = Vec::new();
    for op in ops {
        match op {
            OpRef::Pool => {
                cur = maxpool_ref(&cur, n, c, h, w);
                h /= 2;
                w /= 2;
            }
            OpRef::Conv {
                c: ci,
                k,
                w: wt,
                b,
                relu,
            } => {
                cur = conv_ref(&cur, Nchw { n, c: *ci, h, w }, wt, b, *k, *relu, 0..*k);
                c = *k;
            }
        }
        acts.push(cur.clone());
    }
    let mut y = adaptive_ref(&cur, n, c, h, w, pool);
    for l in lins {
        y = linear_ref(&y, n, l);
    }
    (acts, y)
}

/// `max|a - b| / max|b|` over the given indices (all when `None`).
pub fn rel_err(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    let m = b.iter().fold(0.0f32, |m, v| m.max(v.abs())).max(1e-30);
    a.iter()
        .zip(b)
        .fold(0.0f32, |e, (x, y)| e.max((x - y).abs()))
        / m
}

/// `(max |got − want|, max |want|)` over two tensors of the same shape.
pub fn max_diff(got: &candle_core::Tensor, want: &candle_core::Tensor, what: &str) -> (f32, f32) {
    assert_eq!(got.dims(), want.dims(), "{what}: shapes");
    let values = |t: &candle_core::Tensor| -> Vec<f32> {
        let t = t.to_dtype(candle_core::DType::F32).unwrap();
        t.flatten_all().unwrap().to_vec1().unwrap()
    };
    let (got, want) = (values(got), values(want));
    let scale = want.iter().fold(0f32, |m, v| m.max(v.abs()));
    let worst = got
        .iter()
        .zip(&want)
        .map(|(g, w)| (g - w).abs())
        .fold(0f32, f32::max);
    (worst, scale)
}
