//! Fast CPU inference kernels and plans for VGG-style networks (torchvision vgg11…vgg19_bn).
//! The engine knows nothing of configs, weights files or candle models: [`crate::fast`]
//! turns a layer list plus weights into the [`NetworkSpec`] it compiles.
//!
//! A [`Plan`] is compiled once from a [`NetworkSpec`]: 3×3 convolutions become
//! Winograd layers with pre-transformed filters (F(4×4,3×3) in f32, F(2×2,3×3) in bf16
//! and int8; or im2col+GEMM for the 3-channel stem; `conv.rs` chooses), bias/ReLU and the
//! following 2×2 max-pool are fused into the Winograd output transform, and the adaptive
//! average pool is folded into the first classifier layer when it is a fixed
//! linear map. Activations live in padded NHWC buffers reused across runs.

mod classifier;
mod conv;
mod dense;
mod disjoint;
pub mod gemm;
mod im2col;
mod plan;
mod pool;
pub mod quant;
pub mod simd;
mod tensor;
mod winograd;

use std::fmt;

pub(crate) use im2col::{gather, gemm_weights};
pub use plan::{ConvChoice, Plan, PlanOptions};
pub use pool::adaptive_bin;
pub(crate) use tensor::{ScratchBuffers, Shape as PaddedShape, nchw_to_nhwc};
pub use winograd::Variant as WinogradVariant;
pub(crate) use winograd::WinogradConv;

/// `max(v, 0)`, except that NaN stays NaN, as in PyTorch's ReLU: `f32::max` returns 0 for
/// it, which would turn an overflow into a plausible zero.
#[inline(always)]
pub(crate) fn relu(v: f32) -> f32 {
    if v.is_nan() { v } else { v.max(0.0) }
}

/// The larger of `a` and `b`, NaN if either is, as PyTorch's max-pool chooses
/// (`val > max || isnan(val)`): `f32::max` would drop an overflow's NaN.
#[inline(always)]
pub(crate) fn max_keeping_nan(a: f32, b: f32) -> f32 {
    if b > a || b.is_nan() { b } else { a }
}

/// Number format of the engine's products.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Precision {
    /// f32 throughout: agrees with the reference model to float rounding.
    #[default]
    F32,
    /// Winograd F(2,3) tiles and filters and the classifier's weights and inputs rounded
    /// to bf16, products accumulated in f32 (`vdpbf16ps` where the CPU has AVX512_BF16, an
    /// exact but slower emulation elsewhere); activations between layers stay f32. Layers
    /// computed by im2col (under 16 input channels, as the 3-channel stem, or
    /// `ConvChoice::Im2col`) and a dense head stay f32.
    Bf16,
    /// Convolutions and linear layers on u8 operands and s8 weights with i32 sums
    /// (`vpdpbusd` where the CPU has AVX512_VNNI, an exact emulation elsewhere). Convolutions
    /// run Winograd F(2,3) with a scale per tile and position taken from the data and per
    /// position and output channel for the weights (`ConvChoice::Im2col`: the direct
    /// convolution on calibrated u8 inputs); linear layers take symmetric per-output-channel
    /// weight scales and calibrated activation scales ([`NetworkSpec::int8`]). A layer
    /// without a calibrated range (the stem, any layer calibration kept in f32) and a dense
    /// head compute in f32.
    Int8,
}

impl Precision {
    /// Every precision, in the order `--precision` lists them.
    pub const ALL: [Precision; 3] = [Precision::F32, Precision::Bf16, Precision::Int8];

    /// The name `--precision` takes.
    pub fn name(self) -> &'static str {
        match self {
            Precision::F32 => "f32",
            Precision::Bf16 => "bf16",
            Precision::Int8 => "int8",
        }
    }

    /// Parses a `--precision` value; the error names the accepted ones.
    pub fn parse(s: &str) -> Result<Precision, String> {
        Precision::ALL
            .into_iter()
            .find(|p| p.name() == s)
            .ok_or_else(|| {
                let names: Vec<_> = Precision::ALL.iter().map(|p| p.name()).collect();
                format!(
                    "unknown precision '{s}' (expected one of: {})",
                    names.join(", ")
                )
            })
    }
}

impl fmt::Display for Precision {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// One feature-extractor step; BatchNorm is already folded into the conv by the caller.
#[derive(Clone)]
pub enum FeatureOp {
    /// 3×3 convolution, stride 1, padding 1, OIHW weights `[out, in, 3, 3]`.
    Conv3x3 {
        in_channels: usize,
        out_channels: usize,
        weight: Vec<f32>,
        bias: Vec<f32>,
        relu: bool,
    },
    /// 2×2 max-pool, stride 2 (odd sizes floor).
    MaxPool2x2,
}

/// A fully-connected layer; `weight` is `[out, in]` row-major, as PyTorch.
#[derive(Clone)]
pub struct Linear {
    pub in_features: usize,
    pub out_features: usize,
    pub weight: Vec<f32>,
    pub bias: Vec<f32>,
    pub relu: bool,
}

/// A VGG-style network: features, adaptive average pool to `pool×pool`, classifier.
/// Dropout is the identity at inference and therefore absent.
#[derive(Clone)]
pub struct NetworkSpec {
    pub features: Vec<FeatureOp>,
    pub pool: usize,
    pub classifier: Vec<Linear>,
    /// Which layers compute in int8, and their calibrated input ranges: what a plan in
    /// [`Precision::Int8`] needs (see [`quant::Calibrator`]).
    pub int8: Option<quant::Int8Ranges>,
}

/// Errors from plan construction or execution.
#[derive(Debug, Clone, PartialEq)]
pub enum EngineError {
    /// The network description is inconsistent (sizes, channel counts, weights).
    InvalidSpec(String),
    /// A buffer passed to `run`/`run_to` has the wrong length.
    BadLength {
        what: &'static str,
        expected: usize,
        got: usize,
    },
    /// The system refused the memory for a buffer of `bytes`.
    OutOfMemory { bytes: u64 },
    /// The network's convolution number `conv` (counting every convolution from 0; named
    /// `layer` where the caller knows its path), a Winograd one, overflowed float32 on an
    /// input whose largest magnitude is `input_max` (NaN or infinity when a layer before
    /// it overflowed): its transforms' sums reach ~100× their input, so this can happen
    /// where a direct convolution would not, and the ReLU would make zeros of the NaN.
    Overflow {
        conv: usize,
        layer: Option<String>,
        input_max: f32,
    },
}

impl fmt::Display for EngineError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            EngineError::InvalidSpec(m) => write!(f, "invalid network spec: {m}"),
            EngineError::BadLength {
                what,
                expected,
                got,
            } => {
                write!(f, "{what} has {got} elements, expected {expected}")
            }
            EngineError::OutOfMemory { bytes } => write!(
                f,
                "the system refused {:.1} MiB for the engine's buffers, within the memory \
                 budget: the budget is more than this machine can give (lower \
                 --memory-limit / vgg.set_memory_limit(), or free memory)",
                *bytes as f64 / f64::from(1 << 20)
            ),
            EngineError::Overflow {
                conv,
                layer,
                input_max,
            } => {
                let layer = (layer.clone()).unwrap_or_else(|| format!("number {}", conv + 1));
                match input_max.is_finite() {
                    true => write!(
                        f,
                        "the fast engine's Winograd convolution {layer} overflowed float32: \
                         its input reaches {input_max:.1e} in magnitude, and the Winograd \
                         transforms need ~100× headroom over a direct convolution (weights \
                         or inputs this large are out of range; the reference engine, \
                         `--engine reference`, convolves directly and may hold them)"
                    ),
                    false => write!(
                        f,
                        "the input of convolution {layer} is not finite: a layer before it \
                         overflowed float32 (weights or inputs this large are out of range)"
                    ),
                }
            }
        }
    }
}

impl std::error::Error for EngineError {}
