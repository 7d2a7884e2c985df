"""ONNX from Python: models import from ONNX files (checked against ONNX Runtime's outputs,
made by scripts/make_onnx_fixtures.py) and export to graphs ONNX Runtime runs, at sizes where
torch.onnx.export cannot, with configured heads."""

import json

import numpy as np
import pytest

import vgg
from conftest import assert_close, fixture

ort = pytest.importorskip("onnxruntime")


def manifest():
    return json.loads(fixture("onnx/manifest.json").read_text())


@pytest.mark.parametrize("case", [c for c in manifest() if c["style"] != "invalid"],
                         ids=lambda c: c["name"])
def test_imported_models_match_onnx_runtime(case):
    model = vgg.load(fixture(f"onnx/{case['name']}.onnx"))
    x = np.load(fixture(f"onnx/{case['name']}.input.npy"))
    if case["input_layout"] == "NHWC":
        x = np.ascontiguousarray(x.transpose(0, 3, 1, 2))
    want = np.load(fixture(f"onnx/{case['name']}.output.npy"))
    assert_close(model(x), want, 1e-4, 1e-4, case["name"])
    assert model.config_dict["outputs_probabilities"] == case["expected"]["outputs_probabilities"]


def test_a_graph_that_is_not_vgg_shaped_is_a_weights_error():
    with pytest.raises(vgg.WeightsError, match="Add node `residual_add`"):
        vgg.load(fixture("onnx/not_vgg_add_branch.onnx"))


@pytest.mark.parametrize("shape", [(1, 3, 64, 64), (2, 3, 100, 150), (3, 3, 32, 48)])
def test_export_runs_in_onnx_runtime(tmp_path, shape):
    model = vgg.models.custom([8, "M", 16, "M", 16, "M"], batch_norm=True, pool=3,
                              head=[32, "relu", "bn", 16, "relu", "dropout", 5, "softmax"], seed=3)
    path = tmp_path / "model.onnx"
    model.to_onnx(path, input_shape=shape, dynamic_batch=True)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    x = np.random.default_rng(0).standard_normal(shape).astype(np.float32)
    got = session.run(None, {"input": x})[0]
    assert_close(got, model(x), 1e-4, 1e-4, f"{shape}")
    assert np.allclose(got.sum(axis=1), 1.0, atol=1e-5), "a softmax head outputs probabilities"
    back = vgg.load(path)
    assert back.config_dict["head"] == model.config_dict["head"], "our export records the config"
    assert_close(back(x), got, 1e-4, 1e-4, "imported back")


@pytest.mark.parametrize("opset", [7, 11, 21])
def test_every_opset_we_write_is_valid_for_onnx_runtime(tmp_path, opset):
    model = vgg.models.custom([8, "M", 16, "M"], hidden=16, num_classes=4, pool=2, seed=1)
    path = tmp_path / f"opset{opset}.onnx"
    model.to_onnx(path, input_shape=(2, 3, 40, 40), opset=opset)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    x = np.random.default_rng(1).standard_normal((2, 3, 40, 40)).astype(np.float32)
    assert_close(session.run(None, {"input": x})[0], model(x), 1e-4, 1e-4, f"opset {opset}")
