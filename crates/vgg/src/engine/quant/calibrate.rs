//! Calibration: run the network in f32 on sample inputs, record the range of every layer's
//! input, then measure what each layer loses in int8 *on its own* — the int8 layer fed the
//! f32 layer's exact input, its output compared with the f32 output — so a layer's error
//! is not confused with the error it inherits. Which layers to keep in f32 is the caller's
//! decision, from this report.

use super::super::classifier::{self, Fc, Format};
use super::super::conv::{Conv, ConvScratch, ConvWeights};
use super::super::plan::{Plan, PlanOptions, Probe};
use super::super::simd::Isa;
use super::super::tensor::Shape;
use super::super::{EngineError, FeatureOp, NetworkSpec, Precision};
use super::Int8Ranges;
use crate::engine::tensor::zeroed;

/// Which kind of layer a [`LayerReport`] describes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum QuantLayer {
    Conv,
    Linear,
}

/// What one layer loses in int8, over every measured input: `relative_rms` is
/// ‖int8 − f32‖ / ‖f32‖ of its outputs, `max_over_range` the largest absolute difference
/// over the largest absolute f32 output.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct LayerError {
    pub relative_rms: f64,
    pub max_over_range: f64,
}

/// One convolution or linear layer: its input range over the calibration inputs, whether it
/// can compute in int8 at all, and (once measured) its error there.
#[derive(Clone, Debug, PartialEq)]
pub struct LayerReport {
    pub kind: QuantLayer,
    /// Position among the layers of its kind.
    pub index: usize,
    pub input_min: f32,
    pub input_max: f32,
    /// Why the layer stays in f32 whatever its error (`None`: it can run in int8).
    pub ineligible: Option<&'static str>,
    pub error: Option<LayerError>,
}

/// Running sums of one layer's error.
#[derive(Clone, Copy, Default)]
struct ErrorSums {
    squared_error: f64,
    squared_reference: f64,
    max_error: f32,
    max_reference: f32,
}

impl ErrorSums {
    fn add(&mut self, int8: &[f32], reference: &[f32]) {
        for (q, r) in int8.iter().zip(reference) {
            let e = q - r;
            self.squared_error += f64::from(e * e);
            self.squared_reference += f64::from(r * r);
            self.max_error = self.max_error.max(e.abs());
            self.max_reference = self.max_reference.max(r.abs());
        }
    }

    fn error(&self) -> LayerError {
        let ratio = |a: f64, b: f64| if b > 0.0 { a / b } else { 0.0 };
        LayerError {
            relative_rms: ratio(self.squared_error, self.squared_reference).sqrt(),
            max_over_range: ratio(f64::from(self.max_error), f64::from(self.max_reference)),
        }
    }
}

/// The int8 form of each layer that can have one (as an int8 plan compiles it), built
/// once the ranges are known.
struct Int8Layers {
    convs: Vec<Option<Conv>>,
    linears: Vec<Option<Fc>>,
    scratch: ConvScratch,
    out: Vec<f32>,
    tmp: Vec<f32>,
}

/// Calibrates a network for one input shape: [`Calibrator::observe`] every sample batch,
/// then [`Calibrator::measure`] every batch, then read [`Calibrator::report`].
pub struct Calibrator {
    plan: Plan,
    spec: NetworkSpec,
    reports: Vec<LayerReport>,
    sums: Vec<ErrorSums>,
    int8: Option<Int8Layers>,
}

impl Calibrator {
    /// Compiles `spec` in f32 for `batch × in_channels × height × width` inputs (its pools
    /// unfused, so every convolution's own output can be compared).
    pub fn new(
        spec: NetworkSpec,
        batch: usize,
        in_channels: usize,
        height: usize,
        width: usize,
    ) -> Result<Calibrator, EngineError> {
        let opts = PlanOptions {
            fuse_pool: false,
            ..PlanOptions::default()
        };
        let plan = Plan::with_options(spec.clone(), batch, in_channels, height, width, opts)?;
        let mut reports = Vec::new();
        let convs = spec.features.iter().filter_map(|op| match op {
            FeatureOp::Conv3x3 { in_channels, .. } => Some(*in_channels),
            FeatureOp::MaxPool2x2 => None,
        });
        for (index, c) in convs.enumerate() {
            let stem = (c < 16).then_some("under 16 input channels (im2col in f32, as the stem)");
            reports.push(report(QuantLayer::Conv, index, stem));
        }
        for index in 0..spec.classifier.len() {
            reports.push(report(QuantLayer::Linear, index, None));
        }
        let sums = vec![ErrorSums::default(); reports.len()];
        Ok(Calibrator {
            plan,
            spec,
            reports,
            sums,
            int8: None,
        })
    }

    /// Records the input range of every layer on one batch (NCHW, the compiled shape).
    pub fn observe(&mut self, input: &[f32]) -> Result<(), EngineError> {
        if self.int8.is_some() {
            return Err(EngineError::InvalidSpec(
                "calibration observes every batch before measuring any".into(),
            ));
        }
        let mut probe = RangeProbe(&mut self.reports);
        let mut logits = vec![0.0; self.plan.output_len()];
        self.plan.probe(input, &mut logits, &mut probe)
    }

    /// Accumulates every eligible layer's int8 error on one batch; the first call fixes the
    /// ranges observed so far.
    pub fn measure(&mut self, input: &[f32]) -> Result<(), EngineError> {
        if self.int8.is_none() {
            self.int8 = Some(self.int8_layers()?);
        }
        let int8 = self.int8.as_mut().expect("built above");
        let convs = self
            .reports
            .iter()
            .filter(|r| r.kind == QuantLayer::Conv)
            .count();
        let (conv_sums, linear_sums) = self.sums.split_at_mut(convs);
        let mut probe = ErrorProbe {
            int8,
            conv_sums,
            linear_sums,
        };
        let mut logits = vec![0.0; self.plan.output_len()];
        self.plan.probe(input, &mut logits, &mut probe)?;
        for (report, sums) in self.reports.iter_mut().zip(&self.sums) {
            if report.ineligible.is_none() {
                report.error = Some(sums.error());
            }
        }
        Ok(())
    }

    /// Every convolution, then every linear layer, in order.
    pub fn report(&self) -> &[LayerReport] {
        &self.reports
    }

    /// The ranges of every eligible layer: int8 everywhere it can run.
    pub fn ranges(&self) -> Int8Ranges {
        let of = |kind| {
            (self.reports.iter().filter(|r| r.kind == kind))
                .map(|r| r.ineligible.is_none().then_some(r.input_max))
                .collect()
        };
        Int8Ranges {
            convs: of(QuantLayer::Conv),
            linears: of(QuantLayer::Linear),
        }
    }

    fn int8_layers(&mut self) -> Result<Int8Layers, EngineError> {
        for r in &mut self.reports {
            if r.ineligible.is_none() && r.input_min < 0.0 {
                r.ineligible = Some("negative inputs (u8 activations start at 0)");
            }
        }
        let ranges = self.ranges();
        let mut convs = Vec::new();
        let mut needs = Vec::new();
        let threads = rayon::current_num_threads();
        let int8_options = PlanOptions {
            precision: Precision::Int8,
            ..PlanOptions::default()
        };
        for (op, shape) in self.spec.features.iter().zip(self.plan.feature_inputs()) {
            let FeatureOp::Conv3x3 {
                in_channels,
                out_channels,
                weight,
                bias,
                relu,
            } = op
            else {
                continue;
            };
            let conv = match ranges.convs[convs.len()] {
                Some(max) => {
                    let weights = ConvWeights {
                        in_channels: *in_channels,
                        out_channels: *out_channels,
                        weight,
                        bias,
                        relu: *relu,
                    };
                    let conv = Conv::compile(weights, int8_options, Some(max))?;
                    needs.push(conv.needs(shape, threads));
                    Some(conv)
                }
                None => None,
            };
            convs.push(conv);
        }
        let (fcs, _) = classifier::compile(
            self.spec.classifier.clone(),
            (self.plan.features_output(), self.spec.pool),
            true,
            |i| ranges.linears[i].map_or(Format::F32, |max| Format::Int8 { input_max: max }),
        )?;
        let linears = fcs
            .into_iter()
            .map(|fc| fc.is_int8().then_some(fc))
            .collect();
        let widest = self.plan.largest_activation();
        Ok(Int8Layers {
            convs,
            linears,
            scratch: ConvScratch::for_layers(needs.into_iter())?,
            out: zeroed(widest)?,
            tmp: zeroed(widest)?,
        })
    }
}

fn report(kind: QuantLayer, index: usize, ineligible: Option<&'static str>) -> LayerReport {
    LayerReport {
        kind,
        index,
        input_min: f32::INFINITY,
        input_max: f32::NEG_INFINITY,
        ineligible,
        error: None,
    }
}

/// Widens each layer's recorded input range.
struct RangeProbe<'a>(&'a mut [LayerReport]);

impl RangeProbe<'_> {
    fn record(&mut self, kind: QuantLayer, index: usize, x: &[f32]) {
        if let Some(r) = self
            .0
            .iter_mut()
            .find(|r| r.kind == kind && r.index == index)
        {
            for v in x {
                r.input_min = r.input_min.min(*v);
                r.input_max = r.input_max.max(*v);
            }
        }
    }
}

impl Probe for RangeProbe<'_> {
    fn conv(&mut self, index: usize, _isa: Isa, src: &[f32], _input: Shape, _out: &[f32]) {
        self.record(QuantLayer::Conv, index, src);
    }

    fn linear(&mut self, index: usize, _isa: Isa, x: &[f32], _batch: usize, _y: &[f32]) {
        self.record(QuantLayer::Linear, index, x);
    }
}

/// Runs each int8 layer on the f32 layer's input and adds up the difference.
struct ErrorProbe<'a> {
    int8: &'a mut Int8Layers,
    conv_sums: &'a mut [ErrorSums],
    linear_sums: &'a mut [ErrorSums],
}

impl Probe for ErrorProbe<'_> {
    fn conv(&mut self, index: usize, isa: Isa, src: &[f32], input: Shape, out: &[f32]) {
        let Some(Some(conv)) = self.int8.convs.get(index) else {
            return;
        };
        let got = &mut self.int8.out[..out.len()];
        // Cannot overflow: the calibrating f32 plan (default options: Winograd F(4,3) on
        // every layer this one covers) ran on `src` first and refuses an overflow, and
        // this layer's F(2,3) transforms grow ~4×, not ~100×.
        let _overflowed = conv.run(isa, (src, input), got, &mut self.int8.scratch, false);
        self.conv_sums[index].add(got, out);
    }

    fn linear(&mut self, index: usize, isa: Isa, x: &[f32], batch: usize, y: &[f32]) {
        let Some(Some(fc)) = self.int8.linears.get(index) else {
            return;
        };
        let got = &mut self.int8.out[..y.len()];
        fc.run(isa, x, batch, got, &mut self.int8.tmp);
        self.linear_sums[index].add(got, y);
    }
}
