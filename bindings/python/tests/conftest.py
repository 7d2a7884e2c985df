"""Shared helpers: the repository's fixtures (made by scripts/make_fixtures.py with real
PyTorch) and a minimal safetensors reader, so the suite needs numpy and pytest only."""

import json
import struct
from pathlib import Path

import numpy as np
import pytest

FIXTURES = Path(__file__).resolve().parents[3] / "tests" / "fixtures"

DTYPES = {"F32": np.float32, "F64": np.float64, "I64": np.int64, "F16": np.float16}


def fixture(relative: str) -> Path:
    return FIXTURES / relative


def read_safetensors(path: Path) -> dict:
    """The tensors of a safetensors file as numpy arrays."""
    data = path.read_bytes()
    (length,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8 : 8 + length])
    body = data[8 + length :]
    out = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        start, end = info["data_offsets"]
        out[name] = np.frombuffer(body[start:end], dtype=DTYPES[info["dtype"]]).reshape(info["shape"])
    return out


def assert_close(got, want, atol, rtol, what=""):
    got, want = np.asarray(got, dtype=np.float64), np.asarray(want, dtype=np.float64)
    assert got.shape == want.shape, f"{what}: shape {got.shape} vs {want.shape}"
    scale = float(np.abs(want).max()) if want.size else 0.0
    worst = float(np.abs(got - want).max()) if want.size else 0.0
    assert worst <= atol + rtol * scale, f"{what}: max diff {worst} (max |ref| {scale})"


@pytest.fixture
def tiny_bn():
    import vgg

    return vgg.load(fixture("forward/tiny_bn.pth"))
