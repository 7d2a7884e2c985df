"""Images and pictures: preprocessing equal to torchvision's, classification with class
names, the variants side by side, diagrams and dissections."""

import numpy as np
import pytest

import vgg
from conftest import fixture


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


def test_dissect_report_renders_and_saves(tiny_bn, tmp_path):
    report = vgg.dissect(tiny_bn, fixture("images/landscape.jpg"), resize=64, crop=64)
    assert "<img" in report._repr_html_()
    assert report.top[0][0].startswith("class ")
    report.save(tmp_path / "out")
    assert (tmp_path / "out" / "index.html").exists()
