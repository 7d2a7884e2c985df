//! Criterion benches for the engine's kernels: the SIMD micro-kernels on every instruction
//! set this CPU has (AVX-512 / AVX2+FMA / scalar; bf16: AVX512_BF16 or the emulation; int8:
//! `vpdpbusd` or the emulation), and single convolution layers of vgg16's shapes by
//! algorithm (Winograd F(4,3), F(6,3), im2col in f32; Winograd F(2,3) and direct in int8).
//! Whole-network timings against PyTorch and OpenVINO are `vgg bench` +
//! `scripts/bench_compare.py` and `scripts/bench_precision.py` (BENCHMARKS.md).
//!
//!     cargo bench --bench kernels

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use vgg::engine::quant::Int8Ranges;
use vgg::engine::simd::{
    Bf16, DotRows, DotRowsU8I8, GemmU8I8, Isa, WinoGemm, dot_rows, dot_rows_bf16, dot_rows_u8i8,
    gemm_u8i8, quantize_rows_offset, wino_gemm, wino_gemm_bf16,
};
use vgg::engine::{
    ConvChoice, FeatureOp, Linear, NetworkSpec, Plan, PlanOptions, Precision, WinogradVariant,
};

fn values(n: usize) -> Vec<f32> {
    (0..n).map(|i| ((i % 17) as f32 - 8.0) * 0.01).collect()
}

fn bf16_values(n: usize) -> Vec<Bf16> {
    values(n).into_iter().map(Bf16::from_f32).collect()
}

/// The instruction sets that differ in f32 (the bf16 unit changes only the bf16 products).
fn f32_isas() -> Vec<Isa> {
    Isa::available()
        .into_iter()
        .filter(|i| !i.has_bf16())
        .collect()
}

/// The bf16 forms of the two benches below on every instruction set: `vdpbf16ps` where
/// the CPU has it, the emulation elsewhere.
fn bf16_products(c: &mut Criterion) {
    let (c_len, kbn, np) = (512, 4, 6);
    let (u, v) = (bf16_values(kbn * c_len * 16), bf16_values(np * c_len));
    let (rows, inp) = (64, 4096);
    let (w, x) = (bf16_values(rows * inp), bf16_values(inp));
    let (mut m, mut y) = (vec![0.0; np * kbn * 16], vec![0.0; rows]);
    let mut group = c.benchmark_group("bf16");
    for isa in Isa::available() {
        group.bench_function(format!("wino_gemm/{}", isa.name()), |b| {
            b.iter(|| {
                let (u, v, m) = (&u[..], &v[..], &mut m[..]);
                let step = WinoGemm {
                    c_len,
                    kbn,
                    np,
                    u,
                    v,
                    v_stride: c_len,
                    m,
                };
                wino_gemm_bf16(isa, step)
            })
        });
        group.bench_function(format!("dot_rows/{}", isa.name()), |b| {
            b.iter(|| {
                let (w, x, y) = (&w[..], &x[..], &mut y[..]);
                dot_rows_bf16(
                    isa,
                    DotRows {
                        w,
                        inp,
                        x,
                        batch: 1,
                        y,
                    },
                )
            })
        });
    }
}

/// The int8 kernels on every instruction set: the u8×s8 GEMM of one Winograd position (512
/// input channels, 4 blocks of 16 output channels, 64 tiles), fc7-sized dot products, and
/// the quantisation of 64 transformed tiles' rows.
fn int8_products(c: &mut Criterion) {
    let bytes = |n: usize| (0..n).map(|i| (i * 7 % 97) as u8).collect::<Vec<u8>>();
    let signed = |n: usize| (0..n).map(|i| (i * 5 % 97) as i8 - 48).collect::<Vec<i8>>();
    let (k_len, kbn, np) = (512, 4, 64);
    let (u, v) = (signed(kbn * k_len * 16), bytes(np * k_len));
    let (rows, inp) = (64, 4096);
    let (w, x) = (signed(rows * inp), bytes(inp));
    let tiles = values(np * 16 * k_len);
    let (mut m, mut y) = (vec![0; np * kbn * 16], vec![0; rows]);
    let (mut q, mut scales) = (vec![0u8; tiles.len()], vec![0.0; np * 16]);
    let mut group = c.benchmark_group("int8");
    for isa in Isa::available() {
        group.bench_function(format!("gemm_u8i8/{}", isa.name()), |b| {
            b.iter(|| {
                let (u, v, m) = (&u[..], &v[..], &mut m[..]);
                let g = GemmU8I8 {
                    k_len,
                    kbn,
                    np,
                    u,
                    v,
                    v_stride: k_len,
                    m,
                };
                gemm_u8i8(isa, g)
            })
        });
        group.bench_function(format!("dot_rows_u8i8/{}", isa.name()), |b| {
            b.iter(|| {
                let (w, x, y) = (&w[..], &x[..], &mut y[..]);
                let batch = 1;
                dot_rows_u8i8(
                    isa,
                    DotRowsU8I8 {
                        w,
                        inp,
                        x,
                        batch,
                        y,
                    },
                )
            })
        });
        group.bench_function(format!("quantize_rows_offset/{}", isa.name()), |b| {
            b.iter(|| quantize_rows_offset(isa, &tiles, k_len, &mut q, &mut scales))
        });
    }
}

/// The batched GEMM of one Winograd transform position: 512 input channels, 4 blocks of 16
/// output channels, 6 tiles — the shape of the micro-kernel's inner loop.
fn winograd_gemm(c: &mut Criterion) {
    let (c_len, kbn, np) = (512, 4, 6);
    let (u, v) = (values(kbn * c_len * 16), values(np * c_len));
    let mut m = vec![0.0; np * kbn * 16];
    let mut group = c.benchmark_group("wino_gemm");
    for isa in f32_isas() {
        group.bench_function(isa.name(), |b| {
            b.iter(|| {
                wino_gemm(
                    isa,
                    WinoGemm {
                        c_len,
                        kbn,
                        np,
                        u: &u,
                        v: &v,
                        v_stride: c_len,
                        m: &mut m,
                    },
                )
            })
        });
    }
}

/// fc7-sized dot products (64 rows of 4096) for batch 1.
fn fc_dot_rows(c: &mut Criterion) {
    let (rows, inp) = (64, 4096);
    let (w, x) = (values(rows * inp), values(inp));
    let mut y = vec![0.0; rows];
    let mut group = c.benchmark_group("dot_rows");
    for isa in f32_isas() {
        group.bench_function(isa.name(), |b| {
            b.iter(|| {
                dot_rows(
                    isa,
                    DotRows {
                        w: &w,
                        inp,
                        x: &x,
                        batch: 1,
                        y: &mut y,
                    },
                )
            })
        });
    }
}

/// One 3×3 convolution (+ ReLU) planned with `conv` in `precision` (int8: inputs up to 1);
/// a 1-output classifier closes the plan.
fn conv_plan(
    (channels, out, size): (usize, usize, usize),
    conv: ConvChoice,
    precision: Precision,
) -> Plan {
    let spec = NetworkSpec {
        features: vec![FeatureOp::Conv3x3 {
            in_channels: channels,
            out_channels: out,
            weight: values(out * channels * 9),
            bias: vec![0.01; out],
            relu: true,
        }],
        pool: 1,
        int8: Some(Int8Ranges {
            convs: vec![Some(1.0)],
            linears: vec![None],
        }),
        classifier: vec![Linear {
            in_features: out,
            out_features: 1,
            weight: vec![0.1; out],
            bias: vec![0.0],
            relu: false,
        }],
    };
    Plan::with_options(
        spec,
        1,
        channels,
        size,
        size,
        PlanOptions {
            conv,
            precision,
            ..PlanOptions::default()
        },
    )
    .expect("valid single-layer plan")
}

fn conv_layers(c: &mut Criterion) {
    let mut group = c.benchmark_group("conv3x3");
    group.sample_size(10);
    let algorithms = [
        (
            "F43",
            ConvChoice::Winograd(WinogradVariant::F43),
            Precision::F32,
        ),
        (
            "F63",
            ConvChoice::Winograd(WinogradVariant::F63),
            Precision::F32,
        ),
        ("im2col", ConvChoice::Im2col, Precision::F32),
        ("int8 F23", ConvChoice::Auto, Precision::Int8),
        ("int8 direct", ConvChoice::Im2col, Precision::Int8),
    ];
    for (channels, out, size) in [(64, 64, 56), (256, 256, 28), (512, 512, 14), (512, 512, 4)] {
        let input = values(channels * size * size);
        for (name, conv, precision) in algorithms {
            let mut plan = conv_plan((channels, out, size), conv, precision);
            let mut logits = [0.0f32];
            let id = BenchmarkId::new(name, format!("{channels}to{out}@{size}"));
            group.bench_function(id, |b| {
                b.iter(|| plan.run(&input, &mut logits).expect("runs"))
            });
        }
    }
}

criterion_group!(
    kernels,
    winograd_gemm,
    fc_dot_rows,
    bf16_products,
    int8_products,
    conv_layers
);
criterion_main!(kernels);
