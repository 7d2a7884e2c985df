"""Images and pictures: preprocessing equal to torchvision's, classification with class
names, the variants side by side, diagrams and dissections."""

import io

import numpy as np
import pytest

import vgg
from conftest import assert_close, fixture, read_safetensors


def test_preprocess_equals_torchvision():
    got = vgg.preprocess([fixture("images/rgba.png")])
    want = np.load(fixture("images/imagenet_batch.npy"))
    assert got.shape == want.shape and got.dtype == np.float32
    assert np.abs(got - want).max() < 1e-6


def test_pil_images_and_arrays_are_accepted():
    pil = pytest.importorskip("PIL.Image")
    path = fixture("images/landscape.jpg")
    from_path = vgg.preprocess(path)
    from_pil = vgg.preprocess(pil.open(path))
    np.testing.assert_array_equal(from_path, from_pil)
    rgb = np.asarray(pil.open(path).convert("RGB"))
    np.testing.assert_array_equal(vgg.preprocess([rgb]), from_path)


def test_classify_names_classes(tiny_bn):
    results = tiny_bn.classify([str(fixture("images/landscape.jpg")), str(fixture("images/portrait.jpg"))], topk=3)
    assert len(results) == 2 and all(len(r) == 3 for r in results)
    for top in results:
        probs = [p for _, _, p in top]
        assert probs == sorted(probs, reverse=True) and 0 < sum(probs) <= 1.0001
        assert all(name == f"class {i}" for i, name, _ in top)
    assert vgg.models.vgg11().class_names[0] == "tench"


def test_compare_lists_the_eight_variants():
    rows = vgg.compare((3, 224, 224))
    if not isinstance(rows, list):  # pandas is installed
        rows = rows.reset_index().to_dict("records")
    assert [r["arch"] for r in rows][:2] == ["vgg11", "vgg11_bn"] and len(rows) == 8
    assert rows[4]["params"] == 138_357_544


def test_diagram_is_svg(tmp_path):
    svg = vgg.diagram("vgg16")
    assert svg._repr_svg_().startswith("<svg")
    svg.save(tmp_path / "d.svg")
    assert (tmp_path / "d.svg").read_text() == str(svg)
    svg.save(tmp_path / "d.png")
    assert (tmp_path / "d.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["d.png", "d.svg"]  # no temporaries


def test_dissect_report_renders_and_saves(tiny_bn, tmp_path):
    report = vgg.dissect(tiny_bn, fixture("images/landscape.jpg"), resize=64, crop=64)
    assert "<img" in report._repr_html_()
    assert report.top[0][0].startswith("class ")
    report.save(tmp_path / "out")
    assert (tmp_path / "out" / "index.html").exists()


@pytest.mark.parametrize("protocol", ["center", "dense", "multi-crop", "dense+multi-crop"])
def test_protocols_match_pytorch(protocol):
    """The paper's evaluation protocols, against scripts/make_protocol_fixtures.py's PyTorch
    reference (the fixture network with its last layer sharpened, as the reference does)."""
    import json

    reference = json.loads(fixture("protocols/reference.json").read_text())
    state = read_safetensors(fixture("forward/tiny_bn.safetensors"))
    for key in ("classifier.6.weight", "classifier.6.bias"):
        state[key] = state[key] * np.float32(reference["sharpen"])
    model = vgg.models.custom(
        [8, "M", 16, "M", 16, 16, "M", 32, "M", 32, "M"], batch_norm=True, hidden=32, num_classes=10
    )
    model.load_state_dict(state)
    images = [str(fixture(f"images/{name}")) for name in reference["images"]]
    scales = None if protocol == "center" else reference["scales"]
    results = model.classify(images, topk=10, protocol=protocol, scales=scales)
    for got, want in zip(results, reference["models"]["tiny_bn"][protocol]):
        probs = np.zeros(10)
        for index, _, prob in got:
            probs[index] = prob
        assert_close(probs, want, 1e-5, 0.0, protocol)


def test_protocol_arguments_are_checked(tiny_bn):
    image = [str(fixture("images/landscape.jpg"))]
    with pytest.raises(ValueError, match="valid: center, dense"):
        tiny_bn.classify(image, protocol="ten-crop")
    with pytest.raises(ValueError, match="scales go with"):
        tiny_bn.classify(image, scales=[256])
    with pytest.raises(ValueError, match="at least the dense network's native size 224"):
        tiny_bn.classify(image, protocol="dense", scales=[200])
    with pytest.raises(ValueError, match="at least the multi-crop crop size 96"):
        tiny_bn.classify(image, protocol="multi-crop", crop=96, scales=[80])
    # Multi-crop takes crops of the size asked for, not only the native 224.
    assert len(tiny_bn.classify(image, protocol="multi-crop", crop=96, scales=[100])) == 1


def test_dense_summary_matches_the_cli():
    table = vgg.summary("vgg16", (3, 384, 384), dense=True, file=io.StringIO())
    want = fixture("summary/torchsummary_vgg16_dense_input_3x384x384.txt").read_text()
    assert table.text == want


def test_a_training_checkpoint_brings_its_preprocessing(tmp_path):
    """A `vgg train` checkpoint records how its inputs were made; classify and dissect use
    that unless told otherwise (the fixture network, given such a record)."""
    import json
    import struct

    data = fixture("forward/tiny_bn.safetensors").read_bytes()
    (length,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8 : 8 + length])
    preprocess = {"resize": 72, "crop": 64, "mean": [0.5, 0.5, 0.5], "std": [0.25, 0.25, 0.25],
                  "exif_orientation": False}
    run = {"classes": [f"c{i}" for i in range(10)], "options": {"preprocess": preprocess}}
    header["__metadata__"] = {"format": "vgg-train-checkpoint/1", "run": json.dumps(run)}
    encoded = json.dumps(header).encode()
    path = tmp_path / "trained.safetensors"
    path.write_bytes(struct.pack("<Q", len(encoded)) + encoded + data[8 + length :])

    model = vgg.load(path)
    image = [str(fixture("images/landscape.jpg"))]
    own = model.classify(image, topk=10)
    assert own == model.classify(image, topk=10, resize=72, crop=64, mean=(0.5,) * 3, std=(0.25,) * 3)
    assert own != model.classify(image, topk=10, resize=256, crop=224, mean=(0.485, 0.456, 0.406),
                                 std=(0.229, 0.224, 0.225))
    assert own[0][0][1].startswith("c")
