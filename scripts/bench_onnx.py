#!/usr/bin/env python3
"""One ONNX file, three runtimes: our engine, ONNX Runtime and OpenVINO, side by side, plus our
engine on the .pth the file was made from (an imported ONNX model should be as fast as the
same weights from .pth).

For each case ARCH:SHAPE: a torchvision model with random weights (fixed seed), saved with
torch.save(state_dict), exported by OUR exporter (`vgg convert w.pth m.onnx --input-shape
SHAPE`); that same file goes to all three runtimes. Once per case, one seeded N(0,1) input is
run by `vgg forward --weights m.onnx` (fast engine), ONNX Runtime, OpenVINO and PyTorch, and the
max |diff| of each against ONNX Runtime is printed (tolerance 1e-4 + 1e-4 * max|ref|). Then
`--rounds` rounds, each running, in this order and each in a fresh process:
  ours (onnx)  `vgg --threads T bench --weights m.onnx --input SHAPE --iters I --json`
  ours (.pth)  the same on w.pth
  ORT          this script's `--worker ort`: onnxruntime CPUExecutionProvider,
               intra_op_num_threads=T, inter_op_num_threads=1, ORT_SEQUENTIAL,
               ORT_ENABLE_ALL graph optimisations
  OpenVINO     this script's `--worker ov`: core.set_property("CPU", INFERENCE_NUM_THREADS=T,
               INFERENCE_PRECISION_HINT=f32, PERFORMANCE_HINT=LATENCY), compile_model, one infer
               request
Each times I forward passes after 2 untimed warm-up runs (as `vgg bench` does) and reports their
median; none times loading or compiling the model. Alternating the four in every round spreads
slow phases of a shared machine over all of them. The table shows the median over rounds of
the per-round medians, and ratios against ours on the ONNX file (> 1: ours is faster).

Pinned versions (`../torchenv/bin/pip list`): torch==2.15.0 torchvision==0.29.2 onnx==1.23.2
onnxruntime==1.32.0 openvino==2026.4.1 numpy==2.4.6. Needs a release build (`cargo build
--release`). Files go to a temporary directory, ~1.1 GB per vgg16 case, deleted after the case.

    ../torchenv/bin/python scripts/bench_onnx.py [--cases vgg16:1x3x224x224,vgg16:8x3x224x224,vgg16:1x3x64x64]
        [--rounds 5] [--iters 10] [--threads 2] [--vgg target/release/vgg] [--seed 0]

(internal: `bench_onnx.py --worker ort|ov m.onnx SHAPE T I [--io x.npy y.npy]` times one
runtime, or with --io runs it once on x.npy and writes y.npy)
"""
import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEFAULT_CASES = "vgg16:1x3x224x224,vgg16:8x3x224x224,vgg16:1x3x64x64"
FLAGS = ["avx2", "avx512f", "avx512_bf16", "avx512_vnni", "avx_vnni", "amx"]
WARMUP = 2


def parse_shape(text):
    return tuple(int(d) for d in text.split("x"))


def tol(ref):
    return 1e-4 + 1e-4 * float(np.abs(ref).max())


# ---------------------------------------------------------------- workers (fresh processes)

def ort_runner(path, threads):
    import onnxruntime as ort
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    sess = ort.InferenceSession(path, opts, providers=["CPUExecutionProvider"])
    name = sess.get_inputs()[0].name
    return lambda x: sess.run(None, {name: x})[0]


def ov_runner(path, threads):
    import openvino as ov
    core = ov.Core()
    core.set_property("CPU", {"INFERENCE_NUM_THREADS": threads, "INFERENCE_PRECISION_HINT": "f32",
                              "PERFORMANCE_HINT": "LATENCY"})
    compiled = core.compile_model(core.read_model(path), "CPU")
    request = compiled.create_infer_request()

    def run(x):
        request.infer({0: x}, share_inputs=True)
        return request.get_output_tensor(0).data.copy()
    return run


def worker(kind, path, shape, threads, iters, io):
    run = {"ort": ort_runner, "ov": ov_runner}[kind](path, threads)
    if io:
        np.save(io[1], run(np.load(io[0])))
        return 0
    x = np.random.default_rng(0).standard_normal(parse_shape(shape), dtype=np.float32)
    for _ in range(WARMUP):
        run(x)
    times = []
    for _ in range(iters):
        t = time.perf_counter()
        run(x)
        times.append((time.perf_counter() - t) * 1e3)
    print(f"RESULT median_ms={statistics.median(times):.3f} min_ms={min(times):.3f}")
    return 0


# ---------------------------------------------------------------- driver

def run(cmd):
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        sys.exit(f"`{' '.join(map(str, cmd))}` exited {proc.returncode}:\n{proc.stderr.strip()}")
    return proc.stdout


def ours(vgg, weights, shape, threads, iters):
    out = run([vgg, "--threads", str(threads), "bench", "--weights", weights, "--input", shape,
               "--iters", str(iters), "--json"])
    return json.loads(out.strip().splitlines()[-1])["median_ms"]


def other(kind, onnx_path, shape, threads, iters):
    out = run([sys.executable, os.path.abspath(__file__), "--worker", kind, onnx_path, shape,
               str(threads), str(iters)])
    line = next(l for l in out.splitlines() if l.startswith("RESULT"))
    return float(re.search(r"median_ms=([\d.]+)", line).group(1))


def header():
    import onnxruntime
    import openvino
    import torch
    print(f"onnxruntime {onnxruntime.__version__}, openvino {openvino.__version__}, "
          f"torch {torch.__version__}, numpy {np.__version__}")
    print(cpu_description())


def cpu_description():
    """`lscpu`'s model name, the logical CPU count and which of FLAGS the CPU has."""
    lscpu = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
    model = next((l.split(":", 1)[1].strip() for l in lscpu.splitlines() if l.startswith("Model name")), "?")
    flags = next((l.split(":", 1)[1].split() for l in lscpu.splitlines() if l.startswith("Flags")), [])
    have = [f"{f}: {'yes' if any(g == f or (f == 'amx' and g.startswith('amx')) for g in flags) else 'no'}"
            for f in FLAGS]
    amx = sorted(g for g in flags if g.startswith("amx"))
    return f"CPU: {model}, {os.cpu_count()} logical CPUs; {', '.join(have)}" + (f" ({' '.join(amx)})" if amx else "")


def prepare(arch, shape, work, args):
    """Random torchvision weights -> w.pth -> (our exporter) m.onnx; returns the paths and
    PyTorch's output on the agreement input."""
    import torch
    import torchvision
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    model = getattr(torchvision.models, arch)(weights=None).eval()
    pth, onnx_path = os.path.join(work, "w.pth"), os.path.join(work, "m.onnx")
    torch.save(model.state_dict(), pth)
    run([args.vgg, "--threads", str(args.threads), "convert", pth, onnx_path, "--input-shape", shape])
    x = np.random.default_rng(args.seed + 1).standard_normal(parse_shape(shape), dtype=np.float32)
    x_path = os.path.join(work, "x.npy")
    np.save(x_path, x)
    with torch.no_grad():
        ref = model(torch.from_numpy(x)).numpy()
    return pth, onnx_path, x_path, ref


def agreement(label, onnx_path, x_path, torch_out, work, args):
    outs = {}
    y = os.path.join(work, "y.npy")
    run([args.vgg, "--threads", str(args.threads), "forward", "--weights", onnx_path,
         "--input", x_path, "--output", y])
    outs["ours"] = np.load(y)
    for kind, name in (("ort", "ORT"), ("ov", "OpenVINO")):
        run([sys.executable, os.path.abspath(__file__), "--worker", kind, onnx_path, "-", str(args.threads),
             "0", "--io", x_path, y])
        outs[name] = np.load(y)
    os.remove(y)
    outs["PyTorch"] = torch_out
    ref = outs["ORT"]
    limit = tol(ref)
    ok = True
    parts = []
    for name in ("ours", "OpenVINO", "PyTorch"):
        d = float(np.abs(outs[name] - ref).max()) if outs[name].shape == ref.shape else float("inf")
        ok &= d <= limit
        parts.append(f"{name} {d:.2e}")
    d = float(np.abs(outs["ours"] - outs["OpenVINO"]).max())
    print(f"{label}: max |diff| vs ORT: {', '.join(parts)}; ours vs OpenVINO {d:.2e}; "
          f"tolerance {limit:.2e}: {'all agree' if ok else 'DISAGREE'}", flush=True)
    return ok


def main():
    if len(sys.argv) > 1 and sys.argv[1] == "--worker":
        w = argparse.ArgumentParser()
        w.add_argument("--worker", choices=["ort", "ov"])
        w.add_argument("onnx")
        w.add_argument("shape")
        w.add_argument("threads", type=int)
        w.add_argument("iters", type=int)
        w.add_argument("--io", nargs=2)
        a = w.parse_args()
        return worker(a.worker, a.onnx, a.shape, a.threads, a.iters, a.io)
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--cases", default=DEFAULT_CASES)
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--iters", type=int, default=10)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--vgg", default=os.path.join(ROOT, "target", "release", "vgg"))
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()
    header()
    print(f"vgg: {args.vgg}; {args.rounds} rounds of {args.iters} timed runs each (after {WARMUP} "
          f"warm-up runs), {args.threads} threads\n", flush=True)
    rows, ok = [], True
    with tempfile.TemporaryDirectory(prefix="bench_onnx_") as work:
        for case in args.cases.split(","):
            arch, shape = case.split(":")
            pth, onnx_path, x_path, torch_out = prepare(arch, shape, work, args)
            ok &= agreement(case, onnx_path, x_path, torch_out, work, args)
            times = {"onnx": [], "pth": [], "ort": [], "ov": []}
            for _ in range(args.rounds):
                times["onnx"].append(ours(args.vgg, onnx_path, shape, args.threads, args.iters))
                times["pth"].append(ours(args.vgg, pth, shape, args.threads, args.iters))
                times["ort"].append(other("ort", onnx_path, shape, args.threads, args.iters))
                times["ov"].append(other("ov", onnx_path, shape, args.threads, args.iters))
            for f in (pth, onnx_path, x_path):
                os.remove(f)
            med = {k: statistics.median(v) for k, v in times.items()}
            rounds = " ".join("/".join(f"{times[k][i]:.0f}" for k in times) for i in range(args.rounds))
            rows.append(f"| {arch} {shape} | {args.threads} | {med['onnx']:.1f} | {med['pth']:.1f} | "
                        f"{med['ort']:.1f} | {med['ov']:.1f} | {med['ort'] / med['onnx']:.2f} | "
                        f"{med['ov'] / med['onnx']:.2f} | {med['onnx'] / med['pth']:.2f} | {rounds} |")
            print(f"{case}: done", flush=True)
    print("\n| case | threads | ours (onnx) ms | ours (.pth) ms | ORT ms | OpenVINO ms | ORT/ours "
          "| OpenVINO/ours | ours onnx/.pth | rounds (onnx/pth/ORT/OpenVINO ms) |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    print("\n".join(rows))
    if not ok:
        print("\nthe runtimes DISAGREE on some case (see above)")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
