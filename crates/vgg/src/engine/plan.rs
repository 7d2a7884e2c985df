//! Plan compilation (algorithm choice, weight packing, buffer sizing) and execution.

use super::classifier::{self, Fc, Format};
use super::conv::{Conv, ConvScratch, ConvWeights};
use super::dense::DenseHead;
use super::pool;
use super::quant::Int8Ranges;
use super::simd::Isa;
use super::tensor::{self, Shape};
use super::winograd::Variant;
use super::{EngineError, FeatureOp, NetworkSpec, Precision};
use crate::engine::tensor::zeroed;

/// How 3×3 convolutions are computed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConvChoice {
    /// Winograd F(4,3) in f32, F(2,3) in bf16 and int8 (see `conv.rs`); im2col for < 16
    /// input channels.
    Auto,
    /// Force one Winograd variant wherever the layer has ≥ 16 input channels (int8 layers
    /// run F(2,3) only: another variant with int8 layers is refused).
    Winograd(Variant),
    /// Force im2col + GEMM everywhere (ablation baseline; int8 layers: the direct int8
    /// convolution).
    Im2col,
}

/// Knobs for ablations; `PlanOptions::default()` is the fast configuration.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PlanOptions {
    pub conv: ConvChoice,
    /// Fuse a following 2×2 max-pool into the Winograd output transform.
    pub fuse_pool: bool,
    /// Fold the adaptive average pool into the first linear layer when it is
    /// a fixed linear map that shrinks the input (feature map ≤ pool×pool).
    pub fold_pool: bool,
    /// Compile the dense form: no adaptive pool, the linear layers as convolutions over the
    /// feature map (fc6 `pool×pool`), a class score map as output (paper §3.2).
    pub dense: bool,
    /// Number format of the Winograd convolutions and the classifier (see [`Precision`]).
    pub precision: Precision,
}

impl Default for PlanOptions {
    fn default() -> Self {
        PlanOptions {
            conv: ConvChoice::Auto,
            fuse_pool: true,
            fold_pool: true,
            dense: false,
            precision: Precision::F32,
        }
    }
}

impl PlanOptions {
    /// Refuses options no int8 plan compiles, before any weights are packed or calibrated:
    /// int8 runs Winograd F(2,3) only.
    pub fn check(&self) -> Result<(), EngineError> {
        match (self.conv, self.precision) {
            (ConvChoice::Winograd(v), Precision::Int8) if v != super::conv::INT8_VARIANT => {
                Err(EngineError::InvalidSpec(format!(
                    "int8 runs Winograd F(2x2,3x3) only (asked for {v:?}): F(4,3) loses 5-10% \
                     of a layer's output in 8 bits, F(6,3)'s transforms are wider still"
                )))
            }
            _ => Ok(()),
        }
    }
}

enum StageOp {
    /// A convolution, optionally with the next max-pool fused in.
    Conv {
        conv: Conv,
        pool: bool,
    },
    MaxPool,
}

/// One executed step covering feature ops `first..=last`.
struct Stage {
    op: StageOp,
    first: usize,
    last: usize,
    input: Shape,
    output: Shape,
}

impl Stage {
    /// Takes in the 2×2 max-pool of feature op `i` (to `output`) when this is the
    /// convolution just before it and can fuse it.
    fn fuse_pool(&mut self, i: usize, output: Shape, opts: PlanOptions) -> bool {
        match &mut self.op {
            StageOp::Conv { conv, pool }
                if opts.fuse_pool && conv.fuses_pool() && !*pool && self.last + 1 == i =>
            {
                *pool = true;
                self.last = i;
                self.output = output;
                true
            }
            _ => false,
        }
    }
}

/// What follows the features.
enum Head {
    /// Adaptive pool to `pool×pool` (folded into `fcs[0]` when `folded`), then linear layers.
    Classifier {
        pool: usize,
        folded: bool,
        fcs: Vec<Fc>,
    },
    /// The linear layers as convolutions: a class score map (see [`DenseHead`]).
    Dense(DenseHead),
}

/// A compiled network for one input shape: transformed filters, chosen
/// algorithm per layer and all buffers, reused by every `run`.
pub struct Plan {
    isa: Isa,
    input: Shape,
    stages: Vec<Stage>,
    head: Head,
    precision: Precision,
    act: [Vec<f32>; 2],
    scratch: ConvScratch,
    pooled: Vec<f32>,
    fc_io: [Vec<f32>; 2],
    fc_tmp: Vec<f32>,
}

fn invalid(msg: String) -> EngineError {
    EngineError::InvalidSpec(msg)
}

impl Plan {
    /// Compiles `spec` for `batch × in_channels × height × width` inputs with the fast defaults.
    pub fn new(
        spec: NetworkSpec,
        batch: usize,
        in_channels: usize,
        height: usize,
        width: usize,
    ) -> Result<Plan, EngineError> {
        Plan::with_options(
            spec,
            batch,
            in_channels,
            height,
            width,
            PlanOptions::default(),
        )
    }

    /// Like [`Plan::new`] with explicit [`PlanOptions`] (for ablations).
    pub fn with_options(
        spec: NetworkSpec,
        batch: usize,
        in_channels: usize,
        height: usize,
        width: usize,
        opts: PlanOptions,
    ) -> Result<Plan, EngineError> {
        if batch == 0 || in_channels == 0 || height == 0 || width == 0 || spec.pool == 0 {
            return Err(invalid("zero-sized input or pool".into()));
        }
        let input = Shape::new(batch, height, width, in_channels);
        let int8 = match (opts.precision, spec.int8) {
            (Precision::Int8, Some(ranges)) => ranges,
            (Precision::Int8, None) => {
                return Err(invalid(
                    "int8 needs calibrated activation ranges (NetworkSpec::int8)".into(),
                ));
            }
            _ => Int8Ranges::default(),
        };
        let stages = build_stages(spec.features, input, opts, &int8.convs)?;
        let feat = stages.last().map_or(input, |s| s.output);
        let head = if opts.dense {
            let head = DenseHead::new(spec.classifier, feat, spec.pool)?;
            if head.map_size(feat).is_none() {
                return Err(too_small_for_dense(feat, spec.pool));
            }
            Head::Dense(head)
        } else {
            let format = |i: usize| match opts.precision {
                Precision::F32 => Format::F32,
                Precision::Bf16 => Format::Bf16,
                Precision::Int8 => (int8.linears.get(i).copied().flatten())
                    .map_or(Format::F32, |input_max| Format::Int8 { input_max }),
            };
            let (fcs, folded) =
                classifier::compile(spec.classifier, (feat, spec.pool), opts.fold_pool, format)?;
            Head::Classifier {
                pool: spec.pool,
                folded,
                fcs,
            }
        };
        let mut plan = Plan {
            isa: Isa::detect(),
            input,
            stages,
            head,
            precision: opts.precision,
            act: [Vec::new(), Vec::new()],
            scratch: ConvScratch::default(),
            pooled: Vec::new(),
            fc_io: [Vec::new(), Vec::new()],
            fc_tmp: Vec::new(),
        };
        plan.allocate()?;
        Ok(plan)
    }

    /// Sizes every buffer once for the largest use.
    fn allocate(&mut self) -> Result<(), EngineError> {
        let mut act = self.input.len();
        let mut needs = Vec::new();
        let threads = rayon::current_num_threads();
        for st in &self.stages {
            act = act
                .max(st.output.len())
                .max(st.input.with_channels(st.output.c).len());
            if let StageOp::Conv { conv, .. } = &st.op {
                needs.push(conv.needs(st.input, threads));
            }
        }
        let feat = self.features_shape();
        let n = self.input.n;
        self.act = [zeroed(act)?, zeroed(act)?];
        self.scratch = ConvScratch::for_layers(needs.into_iter())?;
        match &mut self.head {
            Head::Classifier { pool, folded, fcs } => {
                let widest = fcs.iter().map(|f| f.out.max(f.inp)).max().unwrap_or(0);
                self.pooled = if *folded {
                    Vec::new()
                } else {
                    zeroed(n * *pool * *pool * feat.cp)?
                };
                self.fc_io = [zeroed(n * widest)?, zeroed(n * widest)?];
                self.fc_tmp = zeroed(n * widest)?;
            }
            Head::Dense(head) => head.allocate(feat)?,
        }
        Ok(())
    }

    /// Recompiles a dense plan for `height × width` inputs, keeping its weights: the paper's
    /// dense evaluation sees every image at its own size. Standard plans fold the feature
    /// map's size into fc6 and cannot change it.
    pub fn set_input_size(&mut self, height: usize, width: usize) -> Result<(), EngineError> {
        let Head::Dense(head) = &self.head else {
            return Err(invalid(
                "only a dense plan can change its input size".into(),
            ));
        };
        let input = Shape::new(self.input.n, height, width, self.input.c);
        let mut shape = input;
        let mut shapes = Vec::with_capacity(self.stages.len());
        for st in &self.stages {
            let (pooled, convolved) = match &st.op {
                StageOp::MaxPool => (true, shape),
                StageOp::Conv { pool, .. } => (*pool, shape.with_channels(st.output.c)),
            };
            if pooled && (shape.h < 2 || shape.w < 2) {
                return Err(too_small_for_dense(shape, 2));
            }
            let output = if pooled {
                convolved.pooled()
            } else {
                convolved
            };
            shapes.push((shape, output));
            shape = output;
        }
        if head.map_size(shape).is_none() {
            return Err(too_small_for_dense(shape, head.kernel()));
        }
        for (st, (stage_input, output)) in self.stages.iter_mut().zip(shapes) {
            st.input = stage_input;
            st.output = output;
        }
        self.input = input;
        self.allocate()
    }

    /// Elements `run` writes: `[N, classes]` logits, or a dense plan's `[N, classes, h, w]` map.
    pub fn output_len(&self) -> usize {
        let feat = self.features_shape();
        match &self.head {
            Head::Dense(head) => {
                let (h, w) = head.map_size(feat).unwrap_or((0, 0));
                feat.n * head.classes() * h * w
            }
            Head::Classifier { .. } => self.input.n * self.classes(),
        }
    }

    /// The dense plan's score-map height and width; `None` for a standard plan.
    pub fn score_map_size(&self) -> Option<(usize, usize)> {
        match &self.head {
            Head::Dense(head) => head.map_size(self.features_shape()),
            Head::Classifier { .. } => None,
        }
    }

    fn features_shape(&self) -> Shape {
        self.stages.last().map_or(self.input, |s| s.output)
    }

    /// Number of classifier outputs per image.
    pub fn classes(&self) -> usize {
        match &self.head {
            Head::Classifier { fcs, .. } => fcs.last().map_or(0, |f| f.out),
            Head::Dense(head) => head.classes(),
        }
    }

    /// Runs the network on NCHW `input`, writing `[batch, classes]` logits (a dense plan:
    /// the `[batch, classes, h, w]` score map; see [`Plan::output_len`]).
    pub fn run(&mut self, input: &[f32], output: &mut [f32]) -> Result<(), EngineError> {
        let want = self.output_len();
        if output.len() != want {
            return Err(EngineError::BadLength {
                what: "output",
                expected: want,
                got: output.len(),
            });
        }
        let cur = self.features(input, None)?;
        self.classify(cur, output, None);
        Ok(())
    }

    /// Runs the network like [`Plan::run`], showing `probe` every convolution's and linear
    /// layer's input and output as they are computed (calibration).
    pub(crate) fn probe(
        &mut self,
        input: &[f32],
        output: &mut [f32],
        probe: &mut dyn Probe,
    ) -> Result<(), EngineError> {
        if output.len() != self.output_len() || matches!(self.head, Head::Dense(_)) {
            return Err(invalid(
                "probing needs a standard plan and a matching output".into(),
            ));
        }
        let (cur, _) = self.features_until(input, usize::MAX, Some(&mut *probe))?;
        self.classify(cur, output, Some(probe));
        Ok(())
    }

    /// The input shape of every stage.
    pub(crate) fn feature_inputs(&self) -> impl Iterator<Item = Shape> + '_ {
        self.stages.iter().map(|s| s.input)
    }

    /// The feature map the classifier reads.
    pub(crate) fn features_output(&self) -> Shape {
        self.features_shape()
    }

    /// Elements of the largest activation any layer writes.
    pub(crate) fn largest_activation(&self) -> usize {
        self.act[0].len().max(self.fc_io[0].len())
    }

    /// Runs up to and including feature op `stop_after_feature_op` and returns
    /// that activation as NCHW; `None` runs the whole network and returns the logits.
    pub fn run_to(
        &mut self,
        input: &[f32],
        stop_after_feature_op: Option<usize>,
    ) -> Result<Vec<f32>, EngineError> {
        let Some(stop) = stop_after_feature_op else {
            let mut out = vec![0.0; self.output_len()];
            self.run(input, &mut out)?;
            return Ok(out);
        };
        let last = self.stages.last().map_or(0, |s| s.last);
        if stop > last || self.stages.is_empty() {
            return Err(invalid(format!("feature op {stop} out of range")));
        }
        let (cur, shape) = self.features_until(input, stop, None)?;
        Ok(tensor::nhwc_to_nchw(&self.act[cur], shape))
    }

    /// Runs all feature stages; returns the index of the activation buffer holding the result.
    fn features(&mut self, input: &[f32], stop: Option<usize>) -> Result<usize, EngineError> {
        let stop = stop.unwrap_or(usize::MAX);
        Ok(self.features_until(input, stop, None)?.0)
    }

    /// Runs feature stages through op `stop` (splitting a fused conv+pool if
    /// `stop` is the conv); returns the result buffer index and shape.
    fn features_until(
        &mut self,
        input: &[f32],
        stop: usize,
        mut probe: Option<&mut dyn Probe>,
    ) -> Result<(usize, Shape), EngineError> {
        let s = self.input;
        let want = s.n * s.c * s.h * s.w;
        if input.len() != want {
            return Err(EngineError::BadLength {
                what: "input",
                expected: want,
                got: input.len(),
            });
        }
        tensor::nchw_to_nhwc(input, s, &mut self.act[0]);
        let (mut cur, mut shape) = (0, s);
        let mut convs = 0;
        for st in &self.stages {
            if st.first > stop {
                break;
            }
            let (a, b) = self.act.split_at_mut(1);
            let (src, dst) = if cur == 0 {
                (&a[0], &mut b[0])
            } else {
                (&b[0], &mut a[0])
            };
            shape = match &st.op {
                StageOp::MaxPool => {
                    pool::max_pool_2x2(src, st.input, dst);
                    st.output
                }
                StageOp::Conv { conv, pool } => {
                    let pool = *pool && stop > st.first;
                    conv.run(self.isa, (src, st.input), dst, &mut self.scratch, pool)
                        .map_err(|_| EngineError::Overflow {
                            conv: convs,
                            layer: None,
                            input_max: (src[..st.input.len()].iter())
                                .fold(0.0, |m, v| super::max_keeping_nan(m, v.abs())),
                        })?;
                    if pool {
                        st.output
                    } else {
                        st.input.with_channels(st.output.c)
                    }
                }
            };
            if let (StageOp::Conv { .. }, Some(probe)) = (&st.op, probe.as_deref_mut()) {
                let (src, out) = (&src[..st.input.len()], &dst[..shape.len()]);
                probe.conv(convs, self.isa, src, st.input, out);
            }
            convs += usize::from(matches!(st.op, StageOp::Conv { .. }));
            cur = 1 - cur;
        }
        Ok((cur, shape))
    }

    /// Adaptive pool (or its folded form) and the classifier on activation buffer `cur`.
    fn classify(&mut self, cur: usize, output: &mut [f32], mut probe: Option<&mut dyn Probe>) {
        let n = self.input.n;
        let feat = self.features_shape();
        let mut x: &[f32] = &self.act[cur][..feat.len()];
        let (pool, folded, fcs) = match &mut self.head {
            Head::Dense(head) => return head.run(self.isa, x, feat, output),
            Head::Classifier { pool, folded, fcs } => (*pool, *folded, fcs),
        };
        if !folded {
            pool::adaptive_avg_pool(x, feat, pool, &mut self.pooled);
            x = &self.pooled;
        }
        let count = fcs.len();
        let [io0, io1] = &mut self.fc_io;
        for (i, fc) in fcs.iter().enumerate() {
            let (src, dst): (&[f32], &mut [f32]) = match i % 2 {
                _ if i == 0 => (x, io0),
                1 => (io0, io1),
                _ => (io1, io0),
            };
            let dst = if i + 1 == count {
                &mut *output
            } else {
                &mut dst[..n * fc.out]
            };
            fc.run(self.isa, &src[..n * fc.inp], n, dst, &mut self.fc_tmp);
            if let Some(probe) = probe.as_deref_mut() {
                probe.linear(i, self.isa, &src[..n * fc.inp], n, dst);
            }
        }
    }

    /// The number format this plan computes in.
    pub fn precision(&self) -> Precision {
        self.precision
    }

    /// Per-stage summary: algorithm, fused stages, shapes.
    pub fn describe(&self) -> String {
        let products = match self.precision {
            Precision::F32 => "",
            Precision::Bf16 if self.isa.has_bf16() => " (vdpbf16ps)",
            Precision::Bf16 => " (emulated: this CPU has no AVX512_BF16)",
            Precision::Int8 if self.isa.has_vnni() => " (vpdpbusd)",
            Precision::Int8 => " (emulated: this CPU has no AVX512_VNNI or AVX-VNNI)",
        };
        let mut out = format!(
            "isa: {}, threads: {}, precision: {}{products}\n",
            self.isa.name(),
            rayon::current_num_threads(),
            self.precision,
        );
        for st in &self.stages {
            let what = match &st.op {
                StageOp::MaxPool => "maxpool2x2".to_string(),
                StageOp::Conv { conv, pool } => conv.describe(*pool),
            };
            let (i, o) = (st.input, st.output);
            out += &format!(
                "ops {:>2}..={:<2} {}x{}x{} -> {}x{}x{}: {what}\n",
                st.first, st.last, i.c, i.h, i.w, o.c, o.h, o.w
            );
        }
        let f = self.features_shape();
        let (pool, folded, fcs) = match &self.head {
            Head::Dense(head) => return out + &head.describe(),
            Head::Classifier { pool, folded, fcs } => (*pool, *folded, fcs),
        };
        let how = if folded {
            "folded into first linear layer"
        } else {
            "computed"
        };
        out += &format!("adaptive avgpool {}x{} -> {pool}x{pool}: {how}\n", f.h, f.w);
        for fc in fcs {
            out += &fc.describe();
            out.push('\n');
        }
        out
    }
}

fn too_small_for_dense(feat: Shape, window: usize) -> EngineError {
    invalid(format!(
        "a {}x{} feature map is smaller than the dense head's {window}x{window} window",
        feat.h, feat.w
    ))
}

/// Chooses an algorithm per conv, fuses pools, and checks shapes.
fn build_stages(
    features: Vec<FeatureOp>,
    input: Shape,
    opts: PlanOptions,
    int8: &[Option<f32>],
) -> Result<Vec<Stage>, EngineError> {
    let mut stages: Vec<Stage> = Vec::new();
    let mut shape = input;
    let mut convs = 0;
    for (i, op) in features.into_iter().enumerate() {
        let stage = match op {
            FeatureOp::MaxPool2x2 => {
                if shape.h < 2 || shape.w < 2 {
                    return Err(invalid(format!(
                        "op {i}: max-pool on a {}x{} map",
                        shape.h, shape.w
                    )));
                }
                let output = shape.pooled();
                let fused = stages
                    .last_mut()
                    .is_some_and(|s| s.fuse_pool(i, output, opts));
                (!fused).then_some(Stage {
                    op: StageOp::MaxPool,
                    first: i,
                    last: i,
                    input: shape,
                    output,
                })
            }
            FeatureOp::Conv3x3 {
                in_channels,
                out_channels,
                weight,
                bias,
                relu,
            } => {
                let weights = ConvWeights {
                    in_channels,
                    out_channels,
                    weight: &weight,
                    bias: &bias,
                    relu,
                };
                let int8_range = int8.get(convs).copied().flatten();
                convs += 1;
                Some(conv_stage(i, shape, weights, opts, int8_range)?)
            }
        };
        // A max-pool fused into the convolution before it changed that stage's output.
        stages.extend(stage);
        shape = stages.last().map_or(shape, |s| s.output);
    }
    Ok(stages)
}

/// The stage of feature op `i`, a convolution, on input `shape`.
fn conv_stage(
    i: usize,
    shape: Shape,
    w: ConvWeights<'_>,
    opts: PlanOptions,
    int8_range: Option<f32>,
) -> Result<Stage, EngineError> {
    let (c, k) = (w.in_channels, w.out_channels);
    if c != shape.c || k == 0 {
        return Err(invalid(format!(
            "op {i}: expects {c} input channels, gets {}",
            shape.c
        )));
    }
    if w.weight.len() != k * c * 9 || w.bias.len() != k {
        return Err(invalid(format!(
            "op {i}: weight/bias sizes do not match the channel counts"
        )));
    }
    Ok(Stage {
        op: StageOp::Conv {
            conv: Conv::compile(w, opts, int8_range)?,
            pool: false,
        },
        first: i,
        last: i,
        input: shape,
        output: shape.with_channels(k),
    })
}

/// Sees each convolution's and linear layer's input and output during [`Plan::probe`];
/// `index` counts layers of the same kind from 0.
pub(crate) trait Probe {
    fn conv(&mut self, index: usize, isa: Isa, src: &[f32], input: Shape, out: &[f32]);
    fn linear(&mut self, index: usize, isa: Isa, x: &[f32], batch: usize, y: &[f32]);
}
