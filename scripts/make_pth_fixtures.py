#!/usr/bin/env python3
"""Generates the .pth test fixtures under tests/fixtures/pth/.

Run with a Python that has torch:  python scripts/make_pth_fixtures.py

Writes
- tiny_zip.pth / tiny_legacy.pth: the same state_dict (conv, BatchNorm with int64
  num_batches_tracked, linear, plus float16, bfloat16, float64, int32, uint8,
  bool, 0-d, a transposed non-contiguous view, a zero-stride expanded view,
  and two views sharing one storage) saved by torch.save in the zip and legacy formats;
- expected.txt, expected_f32.bin, expected_i64.bin: per tensor
  `name|dtype|shape|strides|storage_offset`, and the values in that order as
  raw little-endian f32 (float dtypes) or i64 (integer and bool dtypes);
- nested_zip.pth ({"epoch", "model"}) and nested_legacy.pth
  ({"state_dict", "optimizer"} whose Adam state has storages of its own);
- evil_zip.pth / evil_legacy.pth: torch.save of an object whose __reduce__
  calls os.system (pickled as posix.system), and evil_os_system.pkl, a bare
  pickle naming os.system;
- hand-built files mimicking torch's writers (checked against torch.load
  where they are valid): legacy_view.pth (an old-style storage view),
  huge_storage_{zip,legacy}.pth (a storage claiming 10**12 elements),
  view_oob_{zip,legacy}.pth (a view past the end of its storage),
  big_endian_{zip,legacy}.pth, compressed_zip.pth, missing_storage_zip.pth,
  expanded_bomb_zip.pth (zero-stride views far larger than their storage),
  shared_views_bomb_zip.pth (1024 views of one storage).
"""

import collections
import io
import os
import pickle
import struct
import sys
import zipfile
from pathlib import Path

import torch
from torch import nn

OUT = Path(__file__).resolve().parent.parent / "tests" / "fixtures" / "pth"
FLOATS = {torch.float32, torch.float64, torch.float16, torch.bfloat16}


def tiny_state_dict():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(2, 3, 3), nn.BatchNorm2d(3), nn.Flatten(), nn.Linear(12, 2))
    model(torch.randn(2, 2, 4, 4))  # one training step of BatchNorm statistics
    sd = model.state_dict()
    sd["extra.half"] = torch.randn(5).half()
    sd["extra.bf16"] = torch.randn(2, 3).bfloat16()
    sd["extra.double"] = torch.randn(3, dtype=torch.float64)
    sd["extra.transposed"] = torch.randn(3, 4).t()  # strides (1, 4)
    sd["extra.int32"] = torch.tensor([1, -2, 3], dtype=torch.int32)
    sd["extra.uint8"] = torch.tensor([0, 255, 7], dtype=torch.uint8)
    sd["extra.bool"] = torch.tensor([True, False, True])
    sd["extra.scalar"] = torch.tensor(3.5)
    sd["extra.expanded"] = torch.tensor([1.5, -2.0]).view(2, 1).expand(2, 3)  # strides (1, 0)
    base = torch.arange(24, dtype=torch.float32) / 8
    sd["shared.a"] = base[2:8]  # offset 2, contiguous
    sd["shared.b"] = base.view(4, 6)[1:3, ::2]  # offset 6, strides (6, 2)
    assert sd["shared.a"].untyped_storage().data_ptr() == sd["shared.b"].untyped_storage().data_ptr()
    return sd


def write_expected(sd):
    lines, f32, i64 = [], [], []
    for name, t in sd.items():
        join = lambda xs: ",".join(str(x) for x in xs)
        dtype = str(t.dtype).removeprefix("torch.")
        lines.append(f"{name}|{dtype}|{join(t.shape)}|{join(t.stride())}|{t.storage_offset()}")
        if t.dtype in FLOATS:
            f32.append(t.float().contiguous().numpy().astype("<f4").tobytes())
        else:
            i64.append(t.long().contiguous().numpy().astype("<i8").tobytes())
    (OUT / "expected.txt").write_text("\n".join(lines) + "\n")
    (OUT / "expected_f32.bin").write_bytes(b"".join(f32))
    (OUT / "expected_i64.bin").write_bytes(b"".join(i64))


def save_both(obj, stem):
    torch.save(obj, OUT / f"{stem}_zip.pth")
    torch.save(obj, OUT / f"{stem}_legacy.pth", _use_new_zipfile_serialization=False)


class Evil:
    def __reduce__(self):
        return (os.system, ("echo hi",))


def nested_checkpoints():
    torch.manual_seed(1)
    layer = nn.Linear(3, 2)
    torch.save({"epoch": 3, "model": layer.state_dict()}, OUT / "nested_zip.pth")
    opt = torch.optim.Adam(layer.parameters())
    layer(torch.randn(4, 3)).sum().backward()
    opt.step()
    ckpt = {"state_dict": layer.state_dict(), "optimizer": opt.state_dict()}
    torch.save(ckpt, OUT / "nested_legacy.pth", _use_new_zipfile_serialization=False)


def evil_files():
    save_both({"x": Evil()}, "evil")
    raw = pickle.dumps({"x": Evil()}, protocol=2)
    raw = raw.replace(b"cposix\nsystem\n", b"cos\nsystem\n")
    assert b"cos\nsystem\n" in raw
    (OUT / "evil_os_system.pkl").write_bytes(raw)


# --- hand-built files -----------------------------------------------------
#
# These mimic torch's two writers with fake storages so that sizes, views and
# zip details can be made wrong on purpose. Honest variants are checked
# against torch.load so the mimicry itself is known to be right.


class FakeStorage:
    def __init__(self, key, numel, data, view=None, legacy=False):
        self.key, self.numel, self.data, self.view, self.legacy = key, numel, data, view, legacy

    def pid(self):
        pid = ("storage", torch.FloatStorage, self.key, "cpu", self.numel)
        return pid + (self.view,) if self.legacy else pid


class FakeTensor:
    def __init__(self, storage, offset, size, stride, v1=False):
        if v1:  # torch < 1.0 wrote _rebuild_tensor(storage, offset, size, stride)
            self.rebuild, self.args = torch._utils._rebuild_tensor, (storage, offset, size, stride)
        else:
            self.rebuild = torch._utils._rebuild_tensor_v2
            self.args = (storage, offset, size, stride, False, collections.OrderedDict())

    def __reduce__(self):
        return (self.rebuild, self.args)


class FakePickler(pickle.Pickler):
    def persistent_id(self, obj):
        return obj.pid() if isinstance(obj, FakeStorage) else None


def fake_pickle(obj):
    buf = io.BytesIO()
    FakePickler(buf, protocol=2).dump(obj)
    return buf.getvalue()


def write_fake_zip(path, tensors, storages, byteorder=b"little", compress_data=False):
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as z:
        z.writestr("archive/data.pkl", fake_pickle(collections.OrderedDict(tensors)))
        z.writestr("archive/byteorder", byteorder)
        z.writestr("archive/version", "3\n")
        method = zipfile.ZIP_DEFLATED if compress_data else zipfile.ZIP_STORED
        for s in storages:
            z.writestr(f"archive/data/{s.key}", s.data, compress_type=method)


def write_fake_legacy(path, tensors, storages, little_endian=True, header_numel=None, patch=lambda b: b):
    sys_info = {"protocol_version": 1001, "little_endian": little_endian,
                "type_sizes": {"short": 2, "int": 4, "long": 4}}
    with open(path, "wb") as f:
        for header in (0x1950A86A20F9469CFC6C, 1001, sys_info):
            pickle.dump(header, f, protocol=2)
        f.write(patch(fake_pickle(collections.OrderedDict(tensors))))
        pickle.dump(sorted(s.key for s in storages), f, protocol=2)
        for s in sorted(storages, key=lambda s: s.key):
            numel = header_numel if header_numel is not None else len(s.data) // 4
            f.write(struct.pack("<q", numel) + s.data)


def floats(*xs):
    return struct.pack(f"<{len(xs)}f", *xs)


def hand_built_files():
    data = floats(*range(8))
    # An old-style storage view: tensors index into elements 2..6 of the root.
    view = FakeStorage("root", 8, data, view=("view", 2, 4), legacy=True)
    write_fake_legacy(OUT / "legacy_view.pth", [("v", FakeTensor(view, 1, (3,), (1,)))], [view])
    loaded = torch.load(OUT / "legacy_view.pth", weights_only=False)
    assert loaded["v"].tolist() == [3.0, 4.0, 5.0], loaded

    # What old (torch < 1.0, Python 2, GPU-saved) files look like: the v1
    # rebuild, Python 2 byte-string keys, torch.cuda storages on cuda:0.
    old = FakeStorage("0", 4, floats(1, 2, 3, 4), legacy=True)
    def python2_gpu(pickled):
        pickled = pickled.replace(b"X\x06\x00\x00\x00conv.w", b"U\x06conv.w")
        pickled = pickled.replace(b"ctorch\nFloatStorage\n", b"ctorch.cuda\nFloatStorage\n")
        return pickled.replace(b"X\x03\x00\x00\x00cpu", b"X\x06\x00\x00\x00cuda:0")
    write_fake_legacy(OUT / "old_style_legacy.pth", [("conv.w", FakeTensor(old, 1, (2,), (2,), v1=True))], [old],
                      patch=python2_gpu)
    raw = (OUT / "old_style_legacy.pth").read_bytes()
    assert b"U\x06conv.w" in raw and b"ctorch.cuda\nFloatStorage" in raw and b"cuda:0" in raw
    loaded = torch.load(OUT / "old_style_legacy.pth", weights_only=False, map_location="cpu")
    assert loaded["conv.w"].tolist() == [2.0, 4.0], loaded

    ok = FakeStorage("0", 4, floats(1, 2, 3, 4))
    write_fake_zip(OUT / "honest_zip.tmp", [("w", FakeTensor(ok, 1, (3,), (1,)))], [ok])
    assert torch.load(OUT / "honest_zip.tmp", weights_only=True)["w"].tolist() == [2.0, 3.0, 4.0]
    os.remove(OUT / "honest_zip.tmp")

    huge = FakeStorage("0", 10**12, floats(1, 2, 3, 4))
    write_fake_zip(OUT / "huge_storage_zip.pth", [("w", FakeTensor(huge, 0, (4,), (1,)))], [huge])
    huge.legacy = True
    write_fake_legacy(OUT / "huge_storage_legacy.pth", [("w", FakeTensor(huge, 0, (4,), (1,)))], [huge],
                      header_numel=10**12)

    for legacy, stem in ((False, "view_oob_zip"), (True, "view_oob_legacy")):
        small = FakeStorage("0", 4, floats(1, 2, 3, 4), legacy=legacy)
        tensors = [("w", FakeTensor(small, 2, (2, 3), (3, 1)))]  # reaches element 7 of 4
        writer = write_fake_legacy if legacy else write_fake_zip
        writer(OUT / f"{stem}.pth", tensors, [small])

    plain = FakeStorage("0", 4, floats(1, 2, 3, 4))
    tensors = [("w", FakeTensor(plain, 0, (4,), (1,)))]
    write_fake_zip(OUT / "big_endian_zip.pth", tensors, [plain], byteorder=b"big")
    write_fake_zip(OUT / "compressed_zip.pth", tensors, [plain], compress_data=True)
    write_fake_zip(OUT / "missing_storage_zip.pth", tensors, [])
    # Two zero-stride views of 2**23 + 8 elements over a 4-element storage:
    # each is allowed alone, together they exceed the expansion budget.
    big = (2**23 + 8,)
    expanded = [(f"e{i}", FakeTensor(plain, 0, big, (0,))) for i in range(2)]
    write_fake_zip(OUT / "expanded_bomb_zip.pth", expanded, [plain])
    # 1024 views of one 64 Ki-element storage: legal (torch.load shares the storage), but
    # read into buffers of their own they would take 256 MiB from a 256 KiB file.
    shared = FakeStorage("0", 1 << 16, floats(*range(1 << 16)))
    views = [(f"v{i}", FakeTensor(shared, 0, (1 << 16,), (1,))) for i in range(1024)]
    write_fake_zip(OUT / "shared_views_bomb_zip.pth", views, [shared])
    assert len(torch.load(OUT / "shared_views_bomb_zip.pth", weights_only=True)) == 1024
    plain.legacy = True
    write_fake_legacy(OUT / "big_endian_legacy.pth", tensors, [plain], little_endian=False)


def main():
    OUT.mkdir(parents=True, exist_ok=True)
    sd = tiny_state_dict()
    save_both(sd, "tiny")
    for fmt in ("zip", "legacy"):
        back = torch.load(OUT / f"tiny_{fmt}.pth", weights_only=True)
        assert all(torch.equal(back[k], v) for k, v in sd.items())
    write_expected(sd)
    nested_checkpoints()
    evil_files()
    hand_built_files()
    print(f"wrote fixtures to {OUT} with torch {torch.__version__}", file=sys.stderr)


if __name__ == "__main__":
    main()
