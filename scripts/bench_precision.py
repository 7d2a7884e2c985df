#!/usr/bin/env python3
"""Our engine's three precisions (f32, bf16, int8) against PyTorch and OpenVINO in f32, bf16 and
(OpenVINO through NNCF) int8, side by side: is our bf16 faster than OpenVINO's bf16 (the target:
ours bf16 <= 0.8x OpenVINO bf16) and our int8 (target: <= 0.6x OpenVINO bf16)?

For each case ARCH:SHAPE: a torchvision model with random weights (weights=None after
torch.manual_seed(SEED), eval mode), saved with torch.save(state_dict) as w.pth and exported by
OUR exporter (`vgg --threads T convert w.pth m.onnx --input-shape SHAPE`) for OpenVINO; PyTorch
loads w.pth into torchvision's ARCH(weights=None). Once per case, before timing, one seeded
N(0,1) input x.npy is run by every runtime below (`vgg forward --weights w.pth --precision
f32|bf16`, int8 on wq.safetensors, the workers with --io), and for each output the max |diff|
against PyTorch f32 divided
by max |PyTorch f32| is printed, with how many images' argmax agree with PyTorch f32's; the f32
runtimes must be within 1e-4 + 1e-4 * max|ref| (the exit status says whether they were), the
bf16 ones are only reported. Then `--rounds` rounds, each running, in this order and each in a
fresh process:
  ours f32        `vgg --threads T bench --weights w.pth --input SHAPE --iters I --json
                  --precision f32` (median_ms of its last, JSON, line)
  ours bf16       the same with `--precision bf16`
  ours int8       the same with `--precision int8` (`vgg bench` calibrates on its own N(0,1)
                  input; the agreement run uses wq.safetensors, which `vgg quantize w.pth
                  --calib calib/ --resize H --crop H` wrote from 8 noise images whose
                  normalised pixels are N(0,1))
  PyTorch f32     this script's `--worker torch`: torch.set_num_threads(T),
                  torch.set_num_interop_threads(1), torchvision ARCH(weights=None) +
                  load_state_dict(w.pth), eval(), under torch.inference_mode()
  PyTorch bf16    `--worker torch-bf16`: the same inside one torch.autocast("cpu",
                  dtype=torch.bfloat16) region around the warm-ups and the timed runs (so
                  autocast's cache of bf16 weight copies lives across them)
  OpenVINO f32    `--worker ov`: core.set_property("CPU", INFERENCE_NUM_THREADS=T,
                  INFERENCE_PRECISION_HINT=f32, PERFORMANCE_HINT=LATENCY), compile_model(m.onnx),
                  one infer request
  OpenVINO bf16   `--worker ov-bf16`: the same with INFERENCE_PRECISION_HINT=bf16; the table
                  names the precision the compiled model reports (OpenVINO runs f32 where the CPU
                  lacks bf16 support)
  OpenVINO int8   `--worker ov-int8`: m.onnx quantised by NNCF (`nncf.quantize`, its default
                  post-training quantisation, on 8 N(0,1) inputs of the case's shape) and saved as
                  m_int8.xml, compiled as OpenVINO f32 is; left out when nncf is not installed
Each times I forward passes on one input after 2 untimed warm-up runs (as `vgg bench` does) and
reports their median; none times loading, converting or compiling the model. Alternating the six
in every round spreads slow phases of a shared machine over all of them. Per case, a Markdown
table gives for each runtime the median over rounds of the per-round medians, images/s (batch /
time), effective GFLOP/s (2 * MACs of one image * batch / time, the MACs summed over the conv and
linear layers of torchvision's ARCH at the case's H x W: 15.47 G for vgg16 at 224 x 224), time /
OpenVINO bf16 time, time / ours bf16 time, and the per-round medians themselves.

Pinned versions (`../torchenv/bin/pip list`): torch==2.15.0 torchvision==0.29.2
openvino==2026.4.1 numpy==2.4.6. Needs a release build (`cargo build --release`). The header
prints the versions and the CPU with its avx512_bf16 / avx512_vnni / amx flags: which bf16 paths
exist depends on them. Files go to a temporary directory per case, ~1.1 GB per vgg16 case,
deleted after the case.

    ../torchenv/bin/python scripts/bench_precision.py [--cases vgg16:1x3x224x224,vgg16:8x3x224x224,vgg16:1x3x64x64]
        [--rounds 5] [--iters 10] [--threads 2] [--vgg target/release/vgg] [--seed 0]
        [--skip torch-bf16,...]   (runtimes to leave out, e.g. PyTorch's autocast bf16 where it
                                   takes tens of seconds per image)

(internal: `bench_precision.py --worker torch|torch-bf16|ov|ov-bf16 ARCH MODEL SHAPE T I
[--io x.npy y.npy]` times one runtime (MODEL: w.pth for torch, m.onnx or .xml for ov), or with
--io runs it once on x.npy and writes y.npy)
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

from bench_onnx import WARMUP, cpu_description, parse_shape, run, tol

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEFAULT_CASES = "vgg16:1x3x224x224,vgg16:8x3x224x224,vgg16:1x3x64x64"
KINDS = ["ours-f32", "ours-bf16", "ours-int8", "torch", "torch-bf16", "ov", "ov-bf16", "ov-int8"]
NAMES = {"ours-f32": "ours f32", "ours-bf16": "ours bf16", "ours-int8": "ours int8",
         "torch": "PyTorch f32", "torch-bf16": "PyTorch bf16 (autocast)", "ov": "OpenVINO f32",
         "ov-bf16": "OpenVINO bf16", "ov-int8": "OpenVINO int8 (NNCF)"}
F32_KINDS = ("ours-f32", "torch", "ov")






# ---------------------------------------------------------------- workers (fresh processes)

def torch_runner(arch, path, threads, bf16):
    """Returns (run, precision): run maps an f32 array to the f32 logits."""
    import contextlib
    import torch
    import torchvision
    torch.set_num_threads(threads)
    try:
        torch.set_num_interop_threads(1)
    except RuntimeError:  # only allowed before any inter-op parallel work
        pass
    model = getattr(torchvision.models, arch)(weights=None)
    model.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
    model.eval()
    stack = contextlib.ExitStack()
    stack.enter_context(torch.inference_mode())
    if bf16:
        stack.enter_context(torch.autocast("cpu", dtype=torch.bfloat16))

    def run(x):
        return model(torch.from_numpy(x)).float().numpy()
    return run, ("autocast bf16" if bf16 else "f32"), stack


def ov_runner(path, threads, bf16):
    import contextlib
    import openvino as ov
    core = ov.Core()
    core.set_property("CPU", {"INFERENCE_NUM_THREADS": threads,
                              "INFERENCE_PRECISION_HINT": "bf16" if bf16 else "f32",
                              "PERFORMANCE_HINT": "LATENCY"})
    compiled = core.compile_model(core.read_model(path), "CPU")
    request = compiled.create_infer_request()
    precision = compiled.get_property("INFERENCE_PRECISION_HINT")  # an ov.Type: f32, bf16
    precision = precision.get_type_name() if hasattr(precision, "get_type_name") else str(precision)

    def run(x):
        request.infer({0: x}, share_inputs=True)
        return np.array(request.get_output_tensor(0).data, dtype=np.float32, copy=True)
    return run, precision, contextlib.nullcontext()


def worker(kind, arch, path, shape, threads, iters, io):
    if kind in ("torch", "torch-bf16"):
        run, precision, context = torch_runner(arch, path, threads, kind == "torch-bf16")
    else:
        run, precision, context = ov_runner(path, threads, kind == "ov-bf16")
        if kind == "ov-int8":
            precision = "int8 (NNCF), " + precision
    with context:
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
    print(f"RESULT median_ms={statistics.median(times):.3f} min_ms={min(times):.3f} "
          f"precision={precision.replace(' ', '_')}")
    return 0


# ---------------------------------------------------------------- driver



def ours(vgg, weights, shape, threads, iters, precision):
    out = run([vgg, "--threads", str(threads), "bench", "--weights", weights, "--input", shape,
               "--iters", str(iters), "--json", "--precision", precision])
    return json.loads(out.strip().splitlines()[-1])["median_ms"], precision


def other(kind, arch, model_path, shape, threads, iters):
    out = run([sys.executable, os.path.abspath(__file__), "--worker", kind, arch, model_path, shape,
               str(threads), str(iters)])
    line = next(l for l in out.splitlines() if l.startswith("RESULT"))
    ms = float(re.search(r"median_ms=([\d.]+)", line).group(1))
    return ms, re.search(r"precision=(\S+)", line).group(1).replace("_", " ")


def model_path(kind, files):
    """The file each runtime reads: ours and PyTorch w.pth (ours int8 in the agreement run:
    wq.safetensors), OpenVINO m.onnx, its int8 form m_int8.xml."""
    if kind == "ov-int8":
        return files["ov-int8"]
    return files["pth"] if kind.startswith(("ours", "torch")) else files["onnx"]


def measure(kind, arch, files, shape, args):
    if kind.startswith("ours-"):
        return ours(args.vgg, files["pth"], shape, args.threads, args.iters, kind[len("ours-"):])
    return other(kind, arch, model_path(kind, files), shape, args.threads, args.iters)


def header():
    import openvino
    import torch
    import torchvision
    print(f"torch {torch.__version__}, torchvision {torchvision.__version__}, "
          f"openvino {openvino.__version__}, numpy {np.__version__}")
    print(cpu_description())


def macs_per_image(arch, h, w):
    """Multiply-accumulates of one H x W image through torchvision's ARCH: every Conv2d's output
    elements x (in_channels / groups) x kernel area, plus every Linear's output elements x
    in_features, counted by forward hooks on a model on the meta device (no arithmetic)."""
    import torch
    import torchvision
    with torch.device("meta"):
        model = getattr(torchvision.models, arch)(weights=None).eval()
    total = [0]

    def hook(module, inputs, output):
        if isinstance(module, torch.nn.Conv2d):
            k = module.kernel_size[0] * module.kernel_size[1]
            total[0] += output.numel() * (module.in_channels // module.groups) * k
        else:
            total[0] += output.numel() * module.in_features
    for m in model.modules():
        if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear)):
            m.register_forward_hook(hook)
    with torch.no_grad():
        model(torch.empty(1, 3, h, w, device="meta"))
    return total[0]


def prepare(arch, shape, work, args):
    """Random torchvision weights -> w.pth -> (our exporter) m.onnx (-> NNCF's m_int8.xml),
    our calibrated wq.safetensors, and the agreement input x.npy; returns the paths."""
    import torch
    import torchvision
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    model = getattr(torchvision.models, arch)(weights=None).eval()
    pth, onnx_path = os.path.join(work, "w.pth"), os.path.join(work, "m.onnx")
    torch.save(model.state_dict(), pth)
    del model
    run([args.vgg, "--threads", str(args.threads), "convert", pth, onnx_path, "--input-shape", shape])
    n, c, h, w = parse_shape(shape)
    calib = os.path.join(work, "calib")
    os.makedirs(calib)
    noise = np.random.default_rng(args.seed + 2)
    from PIL import Image
    # Pixels whose ImageNet-normalised values are N(0, 1) (clipped to what 8 bits hold): the
    # distribution of the timed and compared inputs, as NNCF's calibration data below.
    mean, std = np.array([0.485, 0.456, 0.406]), np.array([0.229, 0.224, 0.225])
    for i in range(8):
        pixels = (noise.standard_normal((h, w, 3)) * std + mean) * 255
        Image.fromarray(np.clip(pixels.round(), 0, 255).astype(np.uint8)).save(f"{calib}/{i}.png")
    wq = os.path.join(work, "wq.safetensors")
    run([args.vgg, "--threads", str(args.threads), "quantize", pth, "--calib", calib, "--resize",
         str(h), "--crop", str(h), "--out", wq])
    files = {"pth": pth, "onnx": onnx_path, "wq": wq}
    try:
        import nncf
        import openvino as ov
        data = [noise.standard_normal((n, c, h, w), dtype=np.float32) for _ in range(8)]
        quantized = nncf.quantize(ov.Core().read_model(onnx_path), nncf.Dataset(data),
                                  subset_size=len(data))
        files["ov-int8"] = os.path.join(work, "m_int8.xml")
        ov.save_model(quantized, files["ov-int8"])
    except ImportError:
        print("nncf is not installed: OpenVINO int8 left out")
    x = np.random.default_rng(args.seed + 1).standard_normal(parse_shape(shape), dtype=np.float32)
    x_path = os.path.join(work, "x.npy")
    np.save(x_path, x)
    return files, x_path


def agreement(label, arch, files, kinds, x_path, work, args):
    """Each runtime's output on x.npy against PyTorch f32's: relative max |diff| and argmax."""
    outs = {}
    for kind in kinds:
        y = os.path.join(work, f"y_{kind}.npy")
        if kind.startswith("ours-"):
            weights = files["wq"] if kind == "ours-int8" else files["pth"]
            run([args.vgg, "--threads", str(args.threads), "forward", "--weights", weights,
                 "--input", x_path, "--output", y, "--precision", kind[len("ours-"):]])
        else:
            run([sys.executable, os.path.abspath(__file__), "--worker", kind, arch,
                 model_path(kind, files), "-", str(args.threads), "0", "--io", x_path, y])
        outs[kind] = np.load(y).astype(np.float32)
        os.remove(y)
    ref = outs["torch"]
    scale = float(np.abs(ref).max())
    limit = tol(ref)
    ok = True
    print(f"{label}: output vs PyTorch f32 (max |PyTorch f32| = {scale:.3e}; f32 tolerance "
          f"{limit:.2e}):")
    for kind in kinds:
        if kind == "torch":
            continue
        out = outs[kind]
        if out.shape != ref.shape:
            print(f"  {NAMES[kind]:24s} shape {out.shape} != {ref.shape}")
            ok = False
            continue
        d = float(np.abs(out - ref).max())
        flat, rflat = out.reshape(out.shape[0], -1), ref.reshape(ref.shape[0], -1)
        same = int((flat.argmax(1) == rflat.argmax(1)).sum())
        verdict = ""
        if kind in F32_KINDS:
            verdict = "  within tolerance" if d <= limit else "  OUTSIDE TOLERANCE"
            ok &= d <= limit
        print(f"  {NAMES[kind]:24s} max|diff|/max|ref| {d / scale:.2e}  argmax agrees "
              f"{same}/{ref.shape[0]}{verdict}", flush=True)
    return ok


def table(arch, shape, kinds, times, precisions, macs, args):
    batch = parse_shape(shape)[0]
    med = {k: statistics.median(v) for k, v in times.items()}
    print(f"\n{arch} {shape}, {args.threads} threads, {macs / 1e9:.4g} GMACs per image, "
          f"{args.rounds} rounds x {args.iters} runs")
    print("\n| runtime | median ms | images/s | GFLOP/s | time / OpenVINO bf16 | time / ours bf16 "
          "| per-round medians (ms) |")
    print("|---|---|---|---|---|---|---|")
    for kind in kinds:
        ms = med[kind]
        name = NAMES[kind]
        if kind.startswith("ov"):
            name += f" (compiled: {precisions[kind]})"
        print(f"| {name} | {ms:.1f} | {batch / ms * 1e3:.2f} | {2 * macs * batch / ms / 1e6:.1f} | "
              f"{ms / med['ov-bf16']:.2f} | {ms / med['ours-bf16']:.2f} | "
              f"{' '.join(f'{t:.1f}' for t in times[kind])} |")
    for ours_kind, target in (("ours-bf16", 0.8), ("ours-int8", 0.6)):
        r = med[ours_kind] / med["ov-bf16"]
        print(f"\n{NAMES[ours_kind]} / OpenVINO bf16 = {r:.2f} (target <= {target:.2f}: "
              f"{'met' if r <= target else 'not met'})", flush=True)
    print()


def main():
    if len(sys.argv) > 1 and sys.argv[1] == "--worker":
        w = argparse.ArgumentParser()
        w.add_argument("--worker", choices=["torch", "torch-bf16", "ov", "ov-bf16", "ov-int8"])
        w.add_argument("arch")
        w.add_argument("model")
        w.add_argument("shape")
        w.add_argument("threads", type=int)
        w.add_argument("iters", type=int)
        w.add_argument("--io", nargs=2)
        a = w.parse_args()
        return worker(a.worker, a.arch, a.model, a.shape, a.threads, a.iters, a.io)
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--cases", default=DEFAULT_CASES)
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--iters", type=int, default=10)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--vgg", default=os.path.join(ROOT, "target", "release", "vgg"))
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--skip", default="", help="comma-separated runtimes to leave out")
    args = p.parse_args()
    skipped = set(filter(None, args.skip.split(",")))
    if skipped - set(KINDS) or skipped & {"ours-bf16", "ours-int8", "ov-bf16", "torch"}:
        p.error(f"--skip takes some of {', '.join(KINDS)} except torch (the reference output), "
                "ours-bf16, ours-int8 and ov-bf16 (the ratios are to those)")
    header()
    print(f"vgg: {args.vgg}; {args.rounds} rounds of {args.iters} timed runs each (after {WARMUP} "
          f"warm-up runs), {args.threads} threads\n", flush=True)
    ok = True
    for case in args.cases.split(","):
        arch, shape = case.split(":")
        n, c, h, w = parse_shape(shape)
        macs = macs_per_image(arch, h, w)
        with tempfile.TemporaryDirectory(prefix="bench_precision_") as work:
            files, x_path = prepare(arch, shape, work, args)
            kinds = [k for k in KINDS if k not in skipped and (k != "ov-int8" or "ov-int8" in files)]
            ok &= agreement(case, arch, files, kinds, x_path, work, args)
            times = {k: [] for k in kinds}
            precisions = {}
            for _ in range(args.rounds):
                for kind in kinds:
                    ms, precisions[kind] = measure(kind, arch, files, shape, args)
                    times[kind].append(ms)
        table(arch, shape, kinds, times, precisions, macs, args)
    if not ok:
        print("an f32 runtime DISAGREES with PyTorch f32 on some case (see above)")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
