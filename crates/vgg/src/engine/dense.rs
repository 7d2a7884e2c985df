//! The classifier as convolutions over the feature map (the paper's dense evaluation,
//! §3.2): fc6 becomes a `k×k` convolution and fc7, fc8 become 1×1 ones. The feature map is
//! NHWC, so the `k` pixels of one window row are contiguous: gathering a window is `k`
//! slice copies, and all windows of the batch then go through each layer as one GEMM.

use super::classifier::{Fc, Format, compile};
use super::simd::Isa;
use super::tensor::Shape;
use super::{EngineError, Linear};
use crate::engine::tensor::zeroed;

/// Windows at or below this count use the row-streaming kernel (bound by reading the
/// weights once); more windows use a GEMM (bound by arithmetic).
const STREAMING_WINDOWS: usize = 4;

/// The dense head: the linear layers with fc6's weights in window (`[out][ky][kx][cp]`) order.
pub(crate) struct DenseHead {
    kernel: usize,
    fcs: Vec<Fc>,
    windows: Vec<f32>,
    io: [Vec<f32>; 2],
    tmp: Vec<f32>,
}

impl DenseHead {
    /// `classifier` as PyTorch holds it; fc6 reads a `kernel×kernel` window of `feat`'s channels.
    pub(crate) fn new(
        classifier: Vec<Linear>,
        feat: Shape,
        kernel: usize,
    ) -> Result<DenseHead, EngineError> {
        // fc6 reads a window as the standard head reads an unfolded `kernel×kernel` map.
        let (fcs, _) = compile(classifier, (feat, kernel), false, |_| Format::F32)?;
        Ok(DenseHead {
            kernel,
            fcs,
            windows: Vec::new(),
            io: [Vec::new(), Vec::new()],
            tmp: Vec::new(),
        })
    }

    /// The score map's height and width on feature map `feat`, if one window fits.
    pub(crate) fn map_size(&self, feat: Shape) -> Option<(usize, usize)> {
        (feat.h >= self.kernel && feat.w >= self.kernel)
            .then(|| (feat.h + 1 - self.kernel, feat.w + 1 - self.kernel))
    }

    /// fc6's window size: the adaptive pool's output size in the standard form.
    pub(crate) fn kernel(&self) -> usize {
        self.kernel
    }

    pub(crate) fn classes(&self) -> usize {
        self.fcs.last().map_or(0, |f| f.out)
    }

    /// Sizes the buffers for feature map `feat` (which must hold a window).
    pub(crate) fn allocate(&mut self, feat: Shape) -> Result<(), EngineError> {
        let (h, w) = self.map_size(feat).unwrap_or((0, 0));
        let rows = feat.n * h * w;
        let widest = self.fcs.iter().map(|f| f.out).max().unwrap_or(0);
        self.windows = zeroed(rows * self.fcs[0].inp)?;
        self.io = [zeroed(rows * widest)?, zeroed(rows * widest)?];
        self.tmp = zeroed(rows * widest)?;
        Ok(())
    }

    /// The score map `[n, classes, h', w']` (NCHW) of NHWC features `x` of shape `feat`.
    pub(crate) fn run(&mut self, isa: Isa, x: &[f32], feat: Shape, out: &mut [f32]) {
        let (mh, mw) = self.map_size(feat).expect("the plan checked the map size");
        let rows = feat.n * mh * mw;
        self.gather(x, feat, mh, mw);
        let classes = self.classes();
        let [io0, io1] = &mut self.io;
        for (i, fc) in self.fcs.iter().enumerate() {
            let (src, dst): (&[f32], &mut [f32]) = match i % 2 {
                _ if i == 0 => (&self.windows, io0),
                1 => (io0, io1),
                _ => (io1, io0),
            };
            let (src, dst) = (&src[..rows * fc.inp], &mut dst[..rows * fc.out]);
            if rows <= STREAMING_WINDOWS {
                fc.run(isa, src, rows, dst, &mut self.tmp);
            } else {
                fc.run_gemm(src, rows, dst);
            }
        }
        let src = if self.fcs.len() % 2 == 1 { io0 } else { io1 };
        let plane = mh * mw;
        for (row, scores) in src[..rows * classes].chunks_exact(classes).enumerate() {
            let (image, pixel) = (row / plane, row % plane);
            for (class, &s) in scores.iter().enumerate() {
                out[(image * classes + class) * plane + pixel] = s;
            }
        }
    }

    /// One row per window: its `k` rows of `k` pixels, each a contiguous NHWC slice.
    fn gather(&mut self, x: &[f32], feat: Shape, mh: usize, mw: usize) {
        let k = self.kernel;
        let span = k * feat.cp;
        let mut rows = self.windows.chunks_exact_mut(k * span);
        for n in 0..feat.n {
            for oy in 0..mh {
                for ox in 0..mw {
                    let row = rows.next().expect("allocated for every window");
                    for (ky, part) in row.chunks_exact_mut(span).enumerate() {
                        let start = ((n * feat.h + oy + ky) * feat.w + ox) * feat.cp;
                        part.copy_from_slice(&x[start..start + span]);
                    }
                }
            }
        }
    }

    pub(crate) fn describe(&self) -> String {
        let mut out = format!(
            "dense head: fc6 as a {k}x{k} convolution (window gather + GEMM), fc7/fc8 as 1x1\n",
            k = self.kernel
        );
        for fc in &self.fcs {
            out += &fc.describe();
            out.push('\n');
        }
        out
    }
}
