//! The fast engine against the reference path (every arch, random weights and batch-norm
//! statistics) and against PyTorch (the fixture networks), within 1e-3·max|ref|.

mod common;

use common::{assert_close, fixture};

use candle_core::{Device, Tensor};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use vgg::engine::{PlanOptions, Precision};
use vgg::fast::FastVgg;
use vgg::model::init::initial_values;
use vgg::weights::{LazyPth, detect::detect_config};
use vgg::{Arch, Mode, Vgg, VggConfig};

/// torchvision's init, but with random biases and batch-norm parameters and statistics, so
/// that folding batch norm is really exercised.
fn random_model(config: VggConfig, seed: u64) -> Vgg {
    let mut rng = StdRng::seed_from_u64(seed);
    Vgg::build(config, seed, &Device::Cpu, |layer, key, spec| {
        let mut values = initial_values(&layer.kind, spec, seed, key);
        let bn = matches!(layer.kind, vgg::model::LayerKind::BatchNorm2d { .. });
        match spec.name {
            "bias" | "running_mean" => values
                .iter_mut()
                .for_each(|v| *v = rng.random_range(-0.1..0.1)),
            "running_var" | "weight" if bn => values
                .iter_mut()
                .for_each(|v| *v = rng.random_range(0.5..1.5)),
            _ => {}
        }
        Ok(Tensor::from_vec(
            values,
            spec.shape.as_slice(),
            &Device::Cpu,
        )?)
    })
    .unwrap()
}

#[test]
fn every_arch_matches_the_reference_path() {
    for arch in Arch::ALL {
        let config = VggConfig::from_arch(arch).with_num_classes(10).unwrap();
        let model = random_model(config, 3);
        for shape in [[1, 3, 32, 32], [2, 3, 64, 48]] {
            let x = Tensor::randn(0f32, 1.0, shape.as_slice(), &Device::Cpu).unwrap();
            let want = model.forward(&x, Mode::Eval).unwrap();
            let mut fast = FastVgg::from_model(&model, shape, PlanOptions::default()).unwrap();
            assert_close(
                &fast.forward(&x).unwrap(),
                &want,
                0.0,
                1e-3,
                &format!("{arch} {shape:?}"),
            );
        }
    }
}

/// bf16 (F(2,3) Winograd, bf16 classifier) on every arch, batch norm folded: within 3% of
/// the reference path's range.
#[test]
fn every_arch_in_bf16_stays_near_the_reference() {
    let options = PlanOptions {
        precision: Precision::Bf16,
        ..PlanOptions::default()
    };
    for arch in Arch::ALL {
        let config = VggConfig::from_arch(arch).with_num_classes(10).unwrap();
        let model = random_model(config, 4);
        let shape = [2, 3, 32, 32];
        let x = Tensor::randn(0f32, 1.0, shape.as_slice(), &Device::Cpu).unwrap();
        let want = model.forward(&x, Mode::Eval).unwrap();
        let got = FastVgg::from_model(&model, shape, options)
            .unwrap()
            .forward(&x)
            .unwrap();
        assert_close(&got, &want, 0.0, 3e-2, &format!("{arch} bf16"));
    }
}

#[test]
fn fixture_networks_match_pytorch() {
    for case in ["tiny_bn", "tiny", "tiny_pool3"] {
        for file in [format!("{case}.pth"), format!("{case}_legacy.pth")] {
            let checkpoint = LazyPth::open(&fixture(&format!("forward/{file}")))
                .unwrap()
                .expect("a torchvision-named .pth");
            let config = detect_config(&checkpoint.shapes()).unwrap();
            let x = Tensor::read_npy(fixture(&format!("forward/{case}_input.npy"))).unwrap();
            let shape: [usize; 4] = x.dims().try_into().unwrap();
            let mut fast =
                FastVgg::from_pth(config, &checkpoint, shape, PlanOptions::default()).unwrap();
            let want = Tensor::read_npy(fixture(&format!("forward/{case}_eval.npy"))).unwrap();
            assert_close(&fast.forward(&x).unwrap(), &want, 0.0, 1e-3, &file);
        }
    }
}

#[test]
fn wrong_input_shape_is_an_error() {
    let model = random_model(VggConfig::custom("8,M,8,M", false).unwrap(), 1);
    let mut fast = FastVgg::from_model(&model, [1, 3, 8, 8], PlanOptions::default()).unwrap();
    let x = Tensor::zeros((2, 3, 8, 8), candle_core::DType::F32, &Device::Cpu).unwrap();
    let err = fast.forward(&x).unwrap_err().to_string();
    assert!(err.contains("compiled for input [1, 3, 8, 8]"), "{err}");
    assert!(FastVgg::from_model(&model, [1, 3, 3, 3], PlanOptions::default()).is_err());
}

/// Inputs near float32's range overflow the Winograd transforms (whose sums reach ~100×
/// the input) where the direct convolution does not: an error naming the layer, not the
/// zeros the ReLU would make of the NaN.
#[test]
fn a_winograd_overflow_is_an_error_not_zeros() {
    let config = VggConfig::from_arch(Arch::Vgg11)
        .with_num_classes(10)
        .unwrap();
    let model = random_model(config, 5);
    let shape = [1, 3, 32, 32];
    let x = (Tensor::randn(0f32, 1.0, shape.as_slice(), &Device::Cpu).unwrap() * 1e37).unwrap();
    let reference = model.forward(&x, Mode::Eval).unwrap();
    let reference = reference.flatten_all().unwrap().to_vec1::<f32>().unwrap();
    assert!(reference.iter().all(|v| v.is_finite()), "{reference:?}");
    let mut fast = FastVgg::from_model(&model, shape, PlanOptions::default()).unwrap();
    let message = fast.forward(&x).unwrap_err().to_string();
    // The stem convolution (im2col) keeps the magnitude; the first Winograd layer's
    // input is its output.
    assert!(
        message.contains("Winograd convolution features.3 overflowed float32")
            && message.contains("e37 in magnitude")
            && message.contains("~100× headroom"),
        "{message}"
    );
    let ordinary = (x / 1e37).unwrap();
    assert!(fast.forward(&ordinary).is_ok(), "the engine still runs");
}

/// A linear layer whose sums overflow both ways (+inf + −inf = NaN): the reference path
/// returns the NaN, as PyTorch does, and the fast engine refuses its outputs; never the
/// finite numbers a NaN-dropping ReLU would make of them.
#[test]
fn a_nan_in_the_classifier_reaches_the_outputs() {
    let config = VggConfig::from_arch(Arch::Vgg11)
        .with_num_classes(10)
        .unwrap();
    let model = Vgg::build(config, 0, &Device::Cpu, |layer, key, spec| {
        let mut values = initial_values(&layer.kind, spec, 0, key);
        if key == "classifier.0.weight" {
            (values.iter_mut().enumerate()).for_each(|(i, v)| *v = [3e38, -3e38][i % 2]);
        }
        Ok(Tensor::from_vec(
            values,
            spec.shape.as_slice(),
            &Device::Cpu,
        )?)
    })
    .unwrap();
    let shape = [1, 3, 32, 32];
    let x = Tensor::randn(0f32, 1.0, shape.as_slice(), &Device::Cpu).unwrap();
    let reference = model.forward(&x, Mode::Eval).unwrap();
    let reference = reference.flatten_all().unwrap().to_vec1::<f32>().unwrap();
    assert!(reference.iter().any(|v| !v.is_finite()), "{reference:?}");
    let mut fast = FastVgg::from_model(&model, shape, PlanOptions::default()).unwrap();
    let message = fast.forward(&x).unwrap_err().to_string();
    assert!(
        message.contains("the fast engine's outputs hold") && message.contains("overflowed"),
        "{message}"
    );
}
