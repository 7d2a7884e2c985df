//! How much memory a forward pass or a training step needs at an input shape, estimated from
//! the layer list with checked arithmetic and checked against the memory budget
//! ([`crate::limits`]) before any of it is allocated: a huge batch, image or pool size is an
//! error that says what it would need, never an abort in the allocator or a wrapped size.
//!
//! The estimates are lower bounds of what the engines allocate (the weights, the input, the
//! largest activations alive at once), so a refusal is never wrong; they are not promises
//! that a run under the budget fits.

use crate::error::Result;
use crate::limits::{Held, array_bytes, reserve};
use crate::model::config::VggConfig;
use crate::model::layers::{build_layers, propagate_shapes};

/// What the memory is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Work {
    /// A forward pass: the weights, the input and two activations at a time (the layer's
    /// input and output), plus as much again for a convolution's scratch buffers.
    Inference,
    /// A training step: the weights four times (values, gradients, two optimiser moments)
    /// and every activation kept for the backward pass, with its gradient.
    Training,
}

/// Bytes that `work` on an NCHW `input` needs at least; `None` when a size overflows.
/// Errors when the network does not accept the input shape at all.
pub fn estimate(config: &VggConfig, input: [usize; 4], work: Work) -> Result<Option<u64>> {
    let [batch, channels, height, width] = input;
    let layers = build_layers(config);
    let shapes = propagate_shapes(config, &layers, [channels, height, width])?;
    let weights = weight_bytes(config);
    // The fast engine pads channels to a multiple of 16.
    let padded = |shape: &[usize]| {
        let mut shape = shape.to_vec();
        if shape.len() == 3 {
            shape[0] = shape[0].checked_next_multiple_of(16)?;
        }
        array_bytes(&shape, 4)?.checked_mul(batch as u64)
    };
    let outputs: Option<Vec<u64>> = shapes.iter().map(|s| padded(&s.output)).collect();
    Ok((|| {
        let (weights, outputs) = (weights?, outputs?);
        let input = padded(&[channels, height, width])?;
        let largest = outputs.iter().copied().max().unwrap_or(0);
        let held = match work {
            Work::Inference => weights.checked_add(largest.checked_mul(4)?)?,
            Work::Training => {
                let all = outputs
                    .iter()
                    .try_fold(0u64, |sum, &b| sum.checked_add(b))?;
                weights.checked_mul(4)?.checked_add(all.checked_mul(2)?)?
            }
        };
        held.checked_add(input)
    })())
}

/// Bytes of the network's weights and buffers as f32; `None` when they overflow.
pub fn weight_bytes(config: &VggConfig) -> Option<u64> {
    build_layers(config)
        .iter()
        .flat_map(|layer| layer.kind.tensors())
        .try_fold(0u64, |sum, t| sum.checked_add(array_bytes(&t.shape, 4)?))
}

/// Refuses the weights of `config` when they would not fit the memory budget: before a
/// model is built or initialised (`--pool 100000` asks for petabytes of classifier).
pub fn check_weights(config: &VggConfig) -> Result<()> {
    reserve(weight_bytes(config), || {
        format!("the weights of {}", describe(config))
    })
}

/// The model's name with the head sizes that make it large, when they differ from VGG's.
fn describe(config: &VggConfig) -> String {
    let mut text = config.name().to_string();
    if config.pool() != 7 {
        text += &format!(" --pool {}", config.pool());
    }
    if config.hidden() != Some(4096) {
        text += &format!(" {}", config.head_flags());
    }
    text
}

/// Refuses `work` on `input` when its [`estimate`] is over the memory budget; `what` names
/// the request as the user made it (a file, a flag) and is built only on refusal.
pub fn check(
    config: &VggConfig,
    input: [usize; 4],
    work: Work,
    what: impl FnOnce() -> String,
) -> Result<()> {
    let (need, request) = need(config, input, work, what)?;
    reserve(need, request)
}

/// [`check`], then `held` holds the estimate (instead of what it held) against the budget
/// for as long as it lives: a compiled engine's buffers stay allocated between calls.
pub fn hold(
    held: &mut Held,
    config: &VggConfig,
    input: [usize; 4],
    work: Work,
    what: impl FnOnce() -> String,
) -> Result<()> {
    let (need, request) = need(config, input, work, what)?;
    held.replace(need, request)
}

/// The [`estimate`] of `work` on `input`, and the request's description for a refusal.
fn need(
    config: &VggConfig,
    input: [usize; 4],
    work: Work,
    what: impl FnOnce() -> String,
) -> Result<(Option<u64>, impl FnOnce() -> String)> {
    let need = match estimate(config, input, work) {
        Ok(need) => need,
        Err(e) => return Err(e.for_request(what)),
    };
    let request = move || {
        let [n, c, h, w] = input;
        let verb = match work {
            Work::Inference => "a forward pass",
            Work::Training => "training",
        };
        format!(
            "{}{verb} of {} on {n}x{c}x{h}x{w}",
            what(),
            describe(config)
        )
    };
    Ok((need, request))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::config::Arch;

    #[test]
    fn estimates_grow_with_work_and_overflow_is_none() {
        let config = VggConfig::from_arch(Arch::Vgg11);
        let infer = estimate(&config, [1, 3, 224, 224], Work::Inference).unwrap();
        let train = estimate(&config, [1, 3, 224, 224], Work::Training).unwrap();
        assert!(infer.unwrap() > 132_863_336 * 4);
        assert!(train.unwrap() > 4 * infer.unwrap() / 2);
        let huge = estimate(&config, [1 << 62, 3, 32, 32], Work::Inference).unwrap();
        assert_eq!(huge, None);
        let wide = estimate(&config, [1, 3, 1 << 32, 1 << 32], Work::Inference);
        assert!(wide.unwrap_err().to_string().contains("overflows"));
    }

    #[test]
    fn a_huge_request_is_refused_with_its_size() {
        let config = VggConfig::from_arch(Arch::Vgg11);
        let err = check(&config, [1, 3, 100_000, 100_000], Work::Inference, || {
            "--input 1x3x100000x100000: ".into()
        })
        .unwrap_err()
        .to_string();
        assert!(err.contains("--input 1x3x100000x100000"), "{err}");
        assert!(err.contains("would need"), "{err}");
        assert!(check(&config, [1, 3, 32, 32], Work::Training, String::new).is_ok());
    }
}
