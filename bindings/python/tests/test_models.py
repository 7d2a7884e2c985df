"""Models from Python: the constructors, checkpoints saved by PyTorch, forward and features
equal to PyTorch's, state_dict round trips, train/eval."""

import numpy as np
import pytest

import vgg
from conftest import assert_close, fixture, read_safetensors

CASES = ["tiny_bn", "tiny", "tiny_pool3"]


def test_the_eight_constructors_have_torchvisions_keys():
    import json

    keys = json.loads(fixture("state_dict_keys.json").read_text())
    for arch in ["vgg11", "vgg11_bn", "vgg13", "vgg13_bn", "vgg16", "vgg16_bn", "vgg19", "vgg19_bn"]:
        model = getattr(vgg.models, arch)(num_classes=10)
        state = model.state_dict()
        want = [(k, s) for k, s, _ in keys[arch] if not k.startswith("classifier.6")]
        got = [(k, list(v.shape)) for k, v in state.items() if not k.startswith("classifier.6")]
        assert got == want, arch
        assert state["classifier.6.weight"].shape == (10, 4096)
        assert model.config_dict["name"] == arch


@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("suffix", [".pth", "_legacy.pth", ".safetensors"])
def test_pytorch_checkpoints_give_pytorchs_logits(case, suffix):
    model = vgg.load(fixture(f"forward/{case}{suffix}"))
    x = np.load(fixture(f"forward/{case}_input.npy"))
    want = np.load(fixture(f"forward/{case}_eval.npy"))
    assert_close(model(x), want, 1e-4, 1e-4, f"{case}{suffix}")


@pytest.mark.parametrize("case", ["tiny_bn", "tiny"])
def test_features_equal_pytorch_hooks(case):
    model = vgg.load(fixture(f"forward/{case}_legacy.pth"))
    x = np.load(fixture(f"forward/{case}_act_input.npy"))
    want = read_safetensors(fixture(f"forward/{case}_activations.safetensors"))
    layers = ["features.3", "features.8", "avgpool", "classifier.4"]
    layers = [name for name in layers if name in want]
    got = model.features(x, layers=layers)
    assert list(got) == layers
    for name in layers:
        assert_close(got[name], want[name], 1e-5, 1e-5, f"{case} {name}")
    every = model.features(x, layers=list(want))
    for name, value in want.items():
        assert_close(every[name], value, 1e-5, 1e-5, f"{case} {name}")


def test_state_dict_round_trip(tiny_bn):
    state = tiny_bn.state_dict()
    assert state["features.1.num_batches_tracked"].dtype == np.int64
    fresh = vgg.models.custom([8, "M", 16, "M", 16, 16, "M", 32, "M", 32, "M"], batch_norm=True,
                              hidden=32, num_classes=10, seed=7)
    x = np.random.default_rng(0).standard_normal((2, 3, 64, 64)).astype(np.float32)
    assert not np.array_equal(fresh(x), tiny_bn(x))
    report = fresh.load_state_dict(state)
    assert (report["missing_keys"], report["unexpected_keys"], report["mismatched"]) == ([], [], [])
    assert report["loaded"] == len(state) and report["hints"] == []
    np.testing.assert_array_equal(fresh(x), tiny_bn(x))
    for key, value in fresh.state_dict().items():
        np.testing.assert_array_equal(value, state[key], err_msg=key)


def test_non_strict_load_keeps_what_is_missing_and_refuses_other_sizes(tiny_bn):
    x = np.random.default_rng(2).standard_normal((1, 3, 64, 64)).astype(np.float32)
    before = tiny_bn(x)
    state = tiny_bn.state_dict()
    partial = {k: v for k, v in state.items() if not k.startswith("classifier")}
    fresh = vgg.models.custom([8, "M", 16, "M", 16, 16, "M", 32, "M", 32, "M"], batch_norm=True,
                              hidden=32, num_classes=10, seed=7)
    head = {k: v for k, v in fresh.state_dict().items() if k.startswith("classifier")}
    report = fresh.load_state_dict(partial, strict=False)
    assert report["missing_keys"] == list(head)
    for key, value in fresh.state_dict().items():
        np.testing.assert_array_equal(value, head.get(key, state[key]), err_msg=key)
    assert not np.array_equal(fresh(x), before)
    wrong = dict(state, **{"classifier.6.bias": np.zeros(3, np.float32)})
    with pytest.raises(vgg.WeightsError, match="size mismatch for classifier.6.bias"):
        fresh.load_state_dict(wrong, strict=False)


def test_training_passes_refresh_the_engines_statistics():
    model = vgg.models.custom([8, "M", 16, "M"], batch_norm=True, hidden=16, num_classes=4, seed=3)
    x = np.random.default_rng(4).standard_normal((4, 3, 32, 32)).astype(np.float32) * 3 + 1
    before = model(x)
    model.train()
    model(x)
    model.eval()
    after = model(x)
    assert not np.allclose(before, after)
    reference = model.features(x, layers=["classifier.6"])["classifier.6"]
    np.testing.assert_allclose(after, reference, rtol=1e-4, atol=1e-5)


def test_strict_load_lists_every_difference(tiny_bn):
    state = tiny_bn.state_dict()
    del state["classifier.0.bias"]
    state["extra.weight"] = np.zeros(3, np.float32)
    with pytest.raises(vgg.WeightsError, match="classifier.0.bias") as error:
        tiny_bn.load_state_dict(state)
    assert "extra.weight" in str(error.value)
    report = tiny_bn.load_state_dict(state, strict=False)
    assert report["missing_keys"] == ["classifier.0.bias"]
    assert report["unexpected_keys"] == ["extra.weight"]


def test_train_mode_uses_batch_statistics_like_pytorch():
    import json

    case = "tiny_bn"
    meta = json.loads(fixture(f"forward/{case}.json").read_text())
    model = vgg.models.custom(
        meta["cfg"].split(","), batch_norm=meta["batch_norm"], hidden=meta["hidden"],
        pool=meta["pool"], num_classes=meta["num_classes"], dropout=0.0,
        weights=fixture(f"forward/{case}.pth"),
    )
    x = np.load(fixture(f"forward/{case}_input.npy"))
    assert model.train() is model and model.training
    assert_close(model(x), np.load(fixture(f"forward/{case}_train.npy")), 1e-4, 1e-4, "train")
    assert not model.eval().training


def test_torch_like_inputs_are_converted():
    model = vgg.load(fixture("forward/tiny.pth"))
    x = np.load(fixture("forward/tiny_input.npy"))
    want = model(x)
    np.testing.assert_array_equal(model(x.astype(np.float64)), want)
    np.testing.assert_array_equal(model(np.asfortranarray(x)), want)
    np.testing.assert_array_equal(model(x.tolist()), want)


def test_bf16_precision_stays_close_and_f32_is_unchanged():
    x = np.load(fixture("forward/tiny_bn_input.npy"))
    want = np.load(fixture("forward/tiny_bn_eval.npy"))
    model = vgg.load(fixture("forward/tiny_bn.safetensors"))
    assert model.precision == "f32"
    exact = model(x)
    model.precision = "bf16"
    assert model.precision == "bf16"
    low = model(x)
    assert_close(low, want, 0.0, 2e-2, "bf16")
    assert not np.array_equal(low, exact)
    model.precision = "f32"
    assert np.array_equal(model(x), exact)
    loaded = vgg.load(fixture("forward/tiny_bn.safetensors"), precision="bf16")
    assert np.array_equal(loaded(x), low)
    top = loaded.classify([np.zeros((40, 40, 3), np.uint8)], topk=1, resize=32, crop=32)
    assert len(top[0]) == 1
    with pytest.raises(ValueError, match="unknown precision 'int4' \\(expected one of: f32, bf16, int8\\)"):
        model.precision = "int4"
    with pytest.raises(ValueError, match="needs a calibration"):
        model.precision = "int8"
    assert model.precision == "f32"


def test_int8_after_calibration_stays_close_to_f32():
    model = vgg.load(fixture("forward/tiny_bn.safetensors"))
    rng = np.random.default_rng(0)
    images = [rng.integers(0, 256, (40, 40, 3), dtype=np.uint8) for _ in range(12)]
    layers = model.calibrate(images, resize=32, crop=32, batch_size=4)
    assert [l["path"] for l in layers][:2] == ["features.0", "features.4"]
    assert not layers[0]["int8"] and "16 input channels" in layers[0]["kept_because"]
    assert any(l["int8"] for l in layers) and all(l["input_max"] >= 0 for l in layers[1:])
    top_f32 = model.classify(images, topk=1, resize=32, crop=32)
    model.precision = "int8"
    assert model.precision == "int8"
    top_int8 = model.classify(images, topk=1, resize=32, crop=32)
    for a, b in zip(top_f32, top_int8):
        assert a[0][0] == b[0][0]
        assert abs(a[0][2] - b[0][2]) < 0.02
    with pytest.raises(ValueError, match="int8 evaluates with the center protocol only"):
        model.classify(images[:1], protocol="dense", scales=[32])


def test_a_deep_copy_has_weights_of_its_own():
    import copy

    model = vgg.load(fixture("forward/tiny_bn.pth"))
    model.precision = "bf16"
    twin = copy.deepcopy(model)
    x = np.random.default_rng(0).standard_normal((2, 3, 64, 64)).astype(np.float32)
    assert twin.precision == "bf16" and twin.class_names == model.class_names
    np.testing.assert_array_equal(twin(x), model(x))
    # A training-mode pass updates batch norm's running statistics of the copy only.
    twin.train()
    twin(x)
    twin.eval()
    before = model.state_dict()["features.1.running_mean"]
    assert not np.array_equal(twin.state_dict()["features.1.running_mean"], before)
    np.testing.assert_array_equal(copy.copy(model).state_dict()["features.1.running_mean"], before)
