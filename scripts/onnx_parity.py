#!/usr/bin/env python3
"""ONNX parity, both directions, for every torchvision VGG.

Export (ours): for each arch, a torchvision model with random weights (fixed seed; for the _bn
archs random BN running stats, mean ~N(0, 0.1), var ~U(0.5, 1.5), and affine parameters),
eval mode, saved with torch.save(state_dict); then for each shape 1x3x224x224, 3x3x64x64 and
2x3x100x150 `vgg convert w.pth m.onnx --input-shape SHAPE`, onnx.checker.check_model
(full_check), the initializer names checked against the state_dict keys, and the graph run in
ONNX Runtime (CPUExecutionProvider) on a seeded N(0,1) input, compared with PyTorch's output of
the same model: max |diff| <= 1e-4 + 1e-4 * max|ref|. One more row per arch exports with
`--dynamic-batch` (at 1x3x64x64) and runs the graph at batch 3, checking the input's batch
dimension is symbolic. At every shape the script also tries torch.onnx.export itself (legacy
TorchScript exporter, dynamo=False, opset 17) and reports whether it succeeds (torch 2.15
fails on adaptive_avg_pool2d when the map is not a multiple of 7, e.g. 64x64 and 100x150);
that is reported, never a failure.

Import: at 1x3x224x224, torch.onnx.export(model, x, m_torch.onnx, dynamo=False,
opset_version=17, dynamic_axes batch) -- a graph with BN folded into Conv, Flatten and Gemm --
run by `vgg forward --weights m_torch.onnx --engine fast|reference` and compared with ONNX
Runtime's output on the same file and input, same tolerance.

Pinned versions (`../torchenv/bin/pip list`): torch==2.15.0 torchvision==0.29.2 onnx==1.23.2
onnxruntime==1.32.0 onnxscript==0.7.2 numpy==2.4.6. Needs a release build
(`cargo build --release`). Files go to a temporary directory and are deleted as soon as they are
used (vgg19: ~550 MB per .pth / .onnx; at most three exist at once, < 2 GB).
Takes a few minutes per arch on 2 cores.

    ../torchenv/bin/python scripts/onnx_parity.py [--archs vgg11 vgg16_bn] [--vgg target/release/vgg]
        [--threads 2] [--seed 0] [--opsets 7,9,13,21]

`--opsets` adds one row per arch and opset: our export at 2x3x100x150 with `--opset N`, same
checks (checker, names, ONNX Runtime against PyTorch).

Prints a markdown table, one row per (arch, shape): arch | shape | export ok (ours) | max diff
vs torch | tol | torch.onnx.export ok? | import diff fast | import diff reference; exits 1 if
any of our exports fails, is invalid, or is out of tolerance, or any import is.
"""
import argparse
import contextlib
import os
import subprocess
import sys
import tempfile
import time
import warnings

import numpy as np
import onnx
import onnxruntime as ort
import torch
import torchvision

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from parity import random_model  # noqa: E402  (the same random weights as the .pth parity)

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ARCHS = ["vgg11", "vgg11_bn", "vgg13", "vgg13_bn", "vgg16", "vgg16_bn", "vgg19", "vgg19_bn"]
SHAPES = [(1, 3, 224, 224), (3, 3, 64, 64), (2, 3, 100, 150)]
DYNAMIC = ((1, 3, 64, 64), 3)  # export shape with --dynamic-batch, batch it is run at


def tol(ref):
    return 1e-4 + 1e-4 * float(np.abs(ref).max())


def sx(shape):
    return "x".join(map(str, shape))


def ort_run(path, x, threads):
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    sess = ort.InferenceSession(path, opts, providers=["CPUExecutionProvider"])
    out = sess.run(None, {sess.get_inputs()[0].name: x})[0]
    dim0 = sess.get_inputs()[0].shape[0]
    del sess
    return out, dim0


@contextlib.contextmanager
def quiet():
    """Silences file descriptors 1 and 2: on failure the legacy exporter dumps the whole
    TorchScript graph (hundreds of lines, from C++, on stdout) before raising; the exception's
    message is enough."""
    sys.stdout.flush()
    sys.stderr.flush()
    saved = [os.dup(1), os.dup(2)]
    with open(os.devnull, "w") as null:
        os.dup2(null.fileno(), 1)
        os.dup2(null.fileno(), 2)
        try:
            yield
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            for fd, copy in zip((1, 2), saved):
                os.dup2(copy, fd)
                os.close(copy)


def torch_export(model, x, path, dynamic):
    """torch.onnx.export, legacy exporter, opset 17; returns None on success, else the error."""
    kwargs = dict(dynamo=False, opset_version=17, input_names=["input"], output_names=["output"])
    if dynamic:
        kwargs["dynamic_axes"] = {"input": {0: "batch"}, "output": {0: "batch"}}
    try:
        with warnings.catch_warnings(), quiet():
            warnings.simplefilter("ignore")
            torch.onnx.export(model, (x,), path, **kwargs)
        return None
    except Exception as e:  # noqa: BLE001 - reported, not fatal
        msg = str(e).strip().splitlines()
        return f"{type(e).__name__}: {msg[0] if msg else ''}"[:160]
    finally:
        if not dynamic and os.path.exists(path):
            os.remove(path)


def run_vgg(cmd):
    t = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True)
    return proc, time.perf_counter() - t


def check_arch(arch, args, work, rows, notes):
    ok = True
    model = random_model(arch, args.seed)
    keys = {k for k in model.state_dict() if not k.endswith("num_batches_tracked")}
    pth = os.path.join(work, f"{arch}.pth")
    torch.save(model.state_dict(), pth)
    onnx_path, x_path, y_path = (os.path.join(work, n) for n in ("m.onnx", "x.npy", "y.npy"))
    cases = [(s, s, False, None) for s in SHAPES] + [(DYNAMIC[0], (DYNAMIC[1], *DYNAMIC[0][1:]), True, None)]
    cases += [(SHAPES[-1], SHAPES[-1], False, o) for o in args.opsets]
    for i, (export_shape, run_shape, dynamic, opset) in enumerate(cases):
        x = torch.randn(run_shape, generator=torch.Generator().manual_seed(args.seed * 100 + i))
        with torch.no_grad():
            ref = model(x).numpy()
        label = sx(export_shape) + (f" --dynamic-batch, run at batch {run_shape[0]}" if dynamic else "")
        label += f" --opset {opset}" if opset else ""
        row = {"arch": arch, "shape": label,
               "tol": tol(ref), "ours": "", "diff": None, "torch": "", "fast": "—", "reference": "—"}
        cmd = [args.vgg, "--threads", str(args.threads), "convert", pth, onnx_path,
               "--input-shape", sx(export_shape)] + (["--dynamic-batch"] if dynamic else [])
        cmd += ["--opset", str(opset)] if opset else []
        proc, secs = run_vgg(cmd)
        if proc.returncode != 0:
            row["ours"] = "FAILED"
            notes.append(f"{arch} {row['shape']}: `{' '.join(cmd)}` exited {proc.returncode}: "
                         f"{proc.stderr.strip()}")
            ok = False
        else:
            problems = []
            try:
                onnx.checker.check_model(onnx_path, full_check=True)
            except Exception as e:  # noqa: BLE001
                problems.append(f"onnx.checker: {str(e).strip().splitlines()[0]}")
            graph = onnx.load(onnx_path).graph
            missing = keys - {t.name for t in graph.initializer}
            if missing:
                problems.append(f"state_dict keys not among the initializers: {sorted(missing)[:6]}")
            del graph
            try:
                out, dim0 = ort_run(onnx_path, x.numpy(), args.threads)
            except Exception as e:  # noqa: BLE001
                problems.append(f"ONNX Runtime: {str(e).strip().splitlines()[0]}")
                out, dim0 = np.full(ref.shape, np.inf, np.float32), None
            if dynamic and isinstance(dim0, int):
                problems.append(f"--dynamic-batch but the input's batch dimension is {dim0}")
            if out.shape != ref.shape:
                problems.append(f"output shape {out.shape} != torch's {ref.shape}")
                row["diff"] = float("inf")
            else:
                row["diff"] = float(np.abs(out - ref).max())
            good = not problems and row["diff"] <= row["tol"]
            row["ours"] = f"ok ({secs:.1f} s)" if not problems else "INVALID"
            notes.extend(f"{arch} {row['shape']}: {p}" for p in problems)
            ok &= good
            os.remove(onnx_path)
        if dynamic or opset:
            row["torch"] = "(not tried)"
        else:
            torch_path = os.path.join(work, "m_torch.onnx")
            import_here = export_shape == (1, 3, 224, 224)
            err = torch_export(model, x, torch_path, dynamic=True if import_here else False)
            row["torch"] = "yes" if err is None else "no"
            if err is not None:
                notes.append(f"{arch} {sx(export_shape)}: torch.onnx.export failed: {err}")
            if import_here and err is None:
                ok &= import_check(arch, args, torch_path, x.numpy(), x_path, y_path, row, notes)
            if os.path.exists(torch_path):
                os.remove(torch_path)
        rows.append(row)
        print_row(row)
    os.remove(pth)
    return ok


def import_check(arch, args, torch_path, x, x_path, y_path, row, notes):
    """vgg forward on torch.onnx.export's graph, both engines, against ONNX Runtime on it."""
    ok = True
    want, _ = ort_run(torch_path, x, args.threads)
    limit = tol(want)
    np.save(x_path, x)
    for engine in ("fast", "reference"):
        cmd = [args.vgg, "--threads", str(args.threads), "forward", "--weights", torch_path,
               "--input", x_path, "--output", y_path, "--engine", engine]
        proc, secs = run_vgg(cmd)
        if proc.returncode != 0:
            row[engine] = "FAILED"
            notes.append(f"{arch} import ({engine}): `{' '.join(cmd)}` exited {proc.returncode}: "
                         f"{proc.stderr.strip()}")
            ok = False
            continue
        got = np.load(y_path)
        diff = float(np.abs(got - want).max()) if got.shape == want.shape else float("inf")
        good = diff <= limit
        row[engine] = f"{diff:.2e}" + ("" if good else f" FAIL (tol {limit:.2e})")
        ok &= good
        os.remove(y_path)
    os.remove(x_path)
    return ok


HEADER = ("| arch | shape | export ok (ours) | max diff vs torch | tol | torch.onnx.export ok? "
          "| import diff fast | import diff reference |\n|---|---|---|---|---|---|---|---|")


def print_row(r):
    diff = "—" if r["diff"] is None else f"{r['diff']:.2e}" + ("" if r["diff"] <= r["tol"] else " FAIL")
    print(f"| {r['arch']} | {r['shape']} | {r['ours']} | {diff} | {r['tol']:.2e} | {r['torch']} "
          f"| {r['fast']} | {r['reference']} |", flush=True)


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--archs", nargs="*", default=ARCHS, choices=ARCHS)
    p.add_argument("--vgg", default=os.path.join(ROOT, "target", "release", "vgg"))
    p.add_argument("--threads", type=int, default=2, help="for torch, ONNX Runtime and vgg")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--opsets", type=lambda t: [int(o) for o in t.split(",") if o], default=[],
                   help="extra rows per arch: our export at 2x3x100x150 with each of these opsets "
                        "(e.g. 7,9,13,21; the default rows use --opset's default, 17)")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, torchvision {torchvision.__version__}, onnx {onnx.__version__}, "
          f"onnxruntime {ort.__version__}, numpy {np.__version__}; vgg: {args.vgg}\n")
    print(HEADER, flush=True)
    rows, notes, ok = [], [], True
    with tempfile.TemporaryDirectory(prefix="onnx_parity_") as work:
        for arch in args.archs:
            ok &= check_arch(arch, args, work, rows, notes)
    if notes:
        print("\nNotes:")
        for n in notes:
            print(f"- {n}")
    print("\nall of ours within tolerance" if ok else "\nFAILURES above")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
