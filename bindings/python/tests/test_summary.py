"""`vgg.summary` prints what torchsummary / torchinfo print, byte for byte: every case of
the CLI's fixture manifest, driven through the Python API."""

import io
import json

import pytest

import vgg
from conftest import fixture

CFGS = {
    "A": [64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"],
    "B": [64, 64, "M", 128, 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"],
    "D": [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"],
    "E": [64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M", 512, 512, 512, 512, "M", 512, 512, 512, 512, "M"],
}
LETTER = {"vgg11": "A", "vgg13": "B", "vgg16": "D", "vgg19": "E"}


def call_for(args):
    """The Python call equivalent to a `vgg summary …` command line."""
    arch, rest = args[1], args[2:]
    flags = {}
    i = 0
    while i < len(rest):
        if rest[i] in ("--batch-norm", "--dense"):
            flags[rest[i]] = True
            i += 1
        else:
            flags.setdefault(rest[i], []).append(rest[i + 1])
            i += 2
    config = {}
    if arch == "custom":
        config["cfg"] = [c if c == "M" else int(c) for c in flags["--cfg"][0].split(",")]
        config["batch_norm"] = "--batch-norm" in flags
    else:
        config["cfg"] = CFGS[LETTER[arch.removesuffix("_bn")]]
        config["batch_norm"] = arch.endswith("_bn")
    for flag, key, kind in [("--hidden", "hidden", int), ("--pool", "pool", int),
                            ("--num-classes", "num_classes", int), ("--dropout", "dropout", float),
                            ("--head", "head", str)]:
        if flag in flags:
            config[key] = kind(flags[flag][0])
    shape = [int(s) for s in flags.get("--input", ["3x224x224"])[0].split("x")]
    batch = int(flags["--batch-size"][0]) if "--batch-size" in flags else -1
    if len(shape) == 4:
        batch, shape = shape[0], shape[1:]
    kwargs = dict(batch_size=batch, format=flags.get("--format", ["torchsummary"])[0])
    if "--columns" in flags:
        kwargs["columns"] = flags["--columns"][0].split(",")
    if "--depth" in flags:
        kwargs["depth"] = int(flags["--depth"][0])
    if "--freeze" in flags:
        kwargs["frozen"] = flags["--freeze"]
    if "--dense" in flags:
        kwargs["dense"] = True
    source = arch if set(config) == {"cfg", "batch_norm"} and arch != "custom" else config
    return source, tuple(shape), kwargs


CASES = [c for c in json.loads(fixture("summary/manifest.json").read_text()) if c["args"][0] == "summary"]


@pytest.mark.parametrize("case", CASES, ids=[c["file"] for c in CASES])
def test_byte_identical_to_the_real_tools(case):
    source, shape, kwargs = call_for(case["args"])
    out = io.StringIO()
    result = vgg.summary(source, shape, file=out, **kwargs)
    want = fixture(f"summary/{case['file']}").read_text()
    assert out.getvalue() == want
    assert str(result) == want


def test_the_lecture_table_from_a_model(capsys):
    result = vgg.summary(vgg.models.vgg11(), (3, 64, 64))
    printed = capsys.readouterr().out
    reference = fixture("../../../shared/reference/torchsummary_vgg11_3x64x64.txt")
    if reference.exists():
        assert printed == reference.read_text()
    assert printed == fixture("summary/torchsummary_vgg11_input_3x64x64.txt").read_text()
    assert result.totals["params"] == 132_863_336
    leaves = [r for r in result.rows if r["is_leaf"]]
    assert leaves[0]["type"] == "Conv2d" and leaves[0]["output_shape"] == [1, 64, 64, 64]
    assert "<table>" in result._repr_html_()


def test_bad_arguments_are_value_errors():
    with pytest.raises(ValueError, match="input_size"):
        vgg.summary("vgg11", (64, 64))
    with pytest.raises(ValueError, match="unknown arch"):
        vgg.summary("vgg12", (3, 64, 64))
    with pytest.raises(ValueError, match="needs at least 32"):
        vgg.summary("vgg11", (3, 16, 16))
    with pytest.raises(TypeError):
        vgg.summary(42, (3, 64, 64))


def test_torchvision_modules_summarise_as_torchsummary_does():
    """Runs where torch is installed (not in CI): a torchvision VGG module is read through
    its structure and summarised like ours."""
    torchvision = pytest.importorskip("torchvision")
    for arch, size in [("vgg11", (3, 64, 64)), ("vgg16_bn", (3, 100, 150))]:
        module = getattr(torchvision.models, arch)(num_classes=7)
        ours = io.StringIO()
        vgg.summary(module, size, file=ours)
        theirs = io.StringIO()
        vgg.summary(getattr(vgg.models, arch)(num_classes=7), size, file=theirs)
        assert ours.getvalue() == theirs.getvalue(), arch
