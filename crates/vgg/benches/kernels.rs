//! Criterion benches for the engine's kernels: the SIMD micro-kernels on every instruction
//! set this CPU has (AVX-512 / AVX2+FMA / scalar; bf16: AVX512_BF16 or the emulation), and
//! single convolution layers of vgg16's shapes by algorithm (Winograd F(4,3), F(6,3), im2col). Whole-network timings against
//! PyTorch are `vgg bench` + `scripts/bench_compare.py` (BENCHMARKS.md).
//!
//!     cargo bench --bench kernels

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use vgg::engine::simd::{
    Bf16, DotRows, Isa, WinoGemm, dot_rows, dot_rows_bf16, wino_gemm, wino_gemm_bf16,
};
use vgg::engine::{ConvChoice, FeatureOp, Linear, NetworkSpec, Plan, PlanOptions, WinogradVariant};

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

/// One 3×3 convolution (+ ReLU) planned with `conv`; a 1-output classifier closes the plan.
fn conv_plan(channels: usize, out: usize, size: usize, conv: ConvChoice) -> Plan {
    let spec = NetworkSpec {
        features: vec![FeatureOp::Conv3x3 {
            in_channels: channels,
            out_channels: out,
            weight: values(out * channels * 9),
            bias: vec![0.01; out],
            relu: true,
        }],
        pool: 1,
        int8: None,
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
            ..PlanOptions::default()
        },
    )
    .expect("valid single-layer plan")
}

fn conv_layers(c: &mut Criterion) {
    let mut group = c.benchmark_group("conv3x3");
    group.sample_size(10);
    let algorithms = [
        ("F43", ConvChoice::Winograd(WinogradVariant::F43)),
        ("F63", ConvChoice::Winograd(WinogradVariant::F63)),
        ("im2col", ConvChoice::Im2col),
    ];
    for (channels, out, size) in [(64, 64, 56), (256, 256, 28), (512, 512, 14), (512, 512, 4)] {
        let input = values(channels * size * size);
        for (name, conv) in algorithms {
            let mut plan = conv_plan(channels, out, size, conv);
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
    conv_layers
);
criterion_main!(kernels);
