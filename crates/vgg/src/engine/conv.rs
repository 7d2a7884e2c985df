//! One compiled 3×3 convolution layer: which algorithm computes it (chosen here, for the
//! plan and for int8 calibration alike, so both run the same layer) and the scratch its
//! algorithm needs.

use super::im2col::Im2colConv;
use super::plan::{ConvChoice, PlanOptions};
use super::quant::{Int8Conv, Int8Scratch};
use super::simd::Isa;
use super::tensor::{Scratch, ScratchBuffers, Shape};
use super::winograd::{Overflow, Variant, WinogradConv};
use super::{EngineError, Precision};

/// Winograd variant chosen by `ConvChoice::Auto`. Measured per vgg16 layer
/// shape (`examples/layer_bench.rs`, see the report): F(4,3) beat F(6,3) on
/// every shape but one (within 5% there), since F(6,3)'s saving of 21% GEMM
/// work is eaten by heavier transforms, more edge waste and 1.8× the filter
/// memory traffic.
const AUTO_VARIANT: Variant = Variant::F43;

/// Winograd variant chosen by `ConvChoice::Auto` in bf16. Rounding the transformed tiles
/// and filters to bf16 is amplified by the transforms' larger entries: on the vgg16 layer
/// shapes (`tests/engine.rs`, `winograd_error_on_vgg_layer_shapes`) F(4,3)'s max error
/// is ~6% of the output's range, F(2,3)'s (entries 0, ±1, ±1/2) a fraction of a percent,
/// close to a direct convolution of bf16-rounded inputs and weights.
const AUTO_VARIANT_BF16: Variant = Variant::F23;

/// The only Winograd variant int8 runs: F(4,3)'s tiles lose 5–10% in 8 bits, F(2,3)'s
/// about what the direct int8 convolution does (see `winograd/int8.rs`).
pub(super) const INT8_VARIANT: Variant = Variant::F23;

/// A 3×3 convolution's weights, as the network spec gives them (OIHW).
pub(crate) struct ConvWeights<'a> {
    pub in_channels: usize,
    pub out_channels: usize,
    pub weight: &'a [f32],
    pub bias: &'a [f32],
    pub relu: bool,
}

pub(crate) enum Conv {
    Winograd(WinogradConv),
    Im2col(Im2colConv),
    /// The direct int8 convolution (im2col in u8).
    Int8(Int8Conv),
}

/// The scratch of a plan's convolutions, shared by its layers.
#[derive(Default)]
pub(crate) struct ConvScratch {
    tiles: ScratchBuffers,
    int8: Int8Scratch,
}

/// What one layer needs of [`ConvScratch`].
pub(crate) struct ConvNeeds {
    tiles: Scratch<usize>,
    int8: [usize; 3],
}

impl ConvScratch {
    /// Room for every layer in `needs`.
    pub(crate) fn for_layers(needs: impl Iterator<Item = ConvNeeds>) -> Result<Self, EngineError> {
        let (mut tiles, mut int8) = (Scratch::<usize>::default(), Vec::new());
        for need in needs {
            tiles = tiles.max(need.tiles);
            int8.push(need.int8);
        }
        Ok(ConvScratch {
            tiles: tiles.allocate()?,
            int8: Int8Scratch::with_lengths(int8.into_iter())?,
        })
    }
}

impl Conv {
    /// Compiles layer `w` in `opts`' algorithm and precision; `int8_range` (the calibrated
    /// input maximum) makes it an int8 layer, `None` keeps it in f32 in an int8 plan.
    /// Layers with under 16 input channels (the stem) use im2col in f32.
    pub(crate) fn compile(
        w: ConvWeights<'_>,
        opts: PlanOptions,
        int8_range: Option<f32>,
    ) -> Result<Conv, EngineError> {
        let precision = match opts.precision {
            Precision::Int8 if int8_range.is_none() => Precision::F32,
            p => p,
        };
        let (c, k) = (w.in_channels, w.out_channels);
        let variant = match (opts.conv, precision) {
            _ if c < 16 => None,
            (ConvChoice::Im2col, _) => None,
            (ConvChoice::Winograd(v), Precision::Int8) => {
                opts.check()?;
                Some(v)
            }
            (ConvChoice::Winograd(v), _) => Some(v),
            (ConvChoice::Auto, Precision::Bf16) => Some(AUTO_VARIANT_BF16),
            (ConvChoice::Auto, Precision::Int8) => Some(INT8_VARIANT),
            (ConvChoice::Auto, _) => Some(AUTO_VARIANT),
        };
        Ok(match (variant, int8_range) {
            (Some(v), _) => Conv::Winograd(WinogradConv::new(
                v,
                precision,
                (c, k),
                w.weight,
                w.bias,
                w.relu,
            )),
            (None, Some(max)) if c >= 16 => {
                Conv::Int8(Int8Conv::new((c, k), w.weight, w.bias, w.relu, max))
            }
            (None, _) => Conv::Im2col(Im2colConv::new(c, k, w.weight, w.bias, w.relu)),
        })
    }

    /// Whether a following 2×2 max-pool can be fused into this layer's output.
    pub(crate) fn fuses_pool(&self) -> bool {
        matches!(self, Conv::Winograd(_))
    }

    /// The scratch this layer needs for input shape `s` on `threads` threads.
    pub(crate) fn needs(&self, s: Shape, threads: usize) -> ConvNeeds {
        let none = Scratch::default();
        let (tiles, int8) = match self {
            Conv::Winograd(w) => (w.scratch_len(s), [0; 3]),
            Conv::Im2col(c) => (
                Scratch {
                    f32: c.scratch_len(s),
                    ..none
                },
                [0; 3],
            ),
            Conv::Int8(c) => (none, c.scratch_len(s, threads)),
        };
        ConvNeeds { tiles, int8 }
    }

    /// Convolves `src` (shape `s`) into `dst`, with the following 2×2 max-pool if `pool`
    /// (only where [`Conv::fuses_pool`]). Only a Winograd layer can overflow where a
    /// direct convolution would not: im2col computes the same sums as the reference path,
    /// and int8 clamps to its calibrated range.
    pub(crate) fn run(
        &self,
        isa: Isa,
        (src, s): (&[f32], Shape),
        dst: &mut [f32],
        scratch: &mut ConvScratch,
        pool: bool,
    ) -> Result<(), Overflow> {
        match self {
            Conv::Winograd(w) => return w.run(isa, src, s, dst, &mut scratch.tiles, pool),
            Conv::Im2col(c) => {
                let threads = rayon::current_num_threads();
                c.run(src, s, dst, &mut scratch.tiles.f32, threads);
            }
            Conv::Int8(c) => c.run(isa, src, s, dst, &mut scratch.int8),
        }
        Ok(())
    }

    pub(crate) fn describe(&self, pool: bool) -> String {
        match self {
            Conv::Winograd(w) => w.describe(pool),
            Conv::Im2col(c) => c.describe(),
            Conv::Int8(c) => c.describe(),
        }
    }
}
