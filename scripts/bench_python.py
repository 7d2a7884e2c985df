#!/usr/bin/env python3
"""The Python package against torchvision, in one Python process, plus `vgg bench` (the
CLI on the same build) in the same rotation, and a parity check on full-size weights.

    ../torchenv/bin/pip install ./bindings/python     # into the venv that has torch
    ../torchenv/bin/python scripts/bench_python.py --threads 2 [--rounds 5] [--iters 10]

Each round times, in turn: `model(x)` from Python (numpy in, numpy out), torchvision's
`vgg16()` under `torch.inference_mode()`, and `vgg --threads T bench` as a subprocess;
each is `--iters` runs after two warm-up runs, and the table reports the median of the
round medians. Run one process per thread count: the thread pool is sized once.

Parity (before timing): torchvision's vgg16 with random weights is saved by `torch.save`
in the zip and the legacy format; `vgg.load` of each gives torchvision's logits within
1e-4 + 1e-4·max|ref|, and `features` of four layers equal forward hooks' outputs.
"""
import argparse
import json
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import torchvision

import vgg

ROOT = Path(__file__).resolve().parent.parent
LAYERS = ["features.3", "features.8", "features.15", "features.22"]


def median_ms(run, iters):
    for _ in range(2):
        run()
    times = []
    for _ in range(iters):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1e3


def worst(got, want):
    got, want = np.asarray(got, np.float64), np.asarray(want, np.float64)
    return float(np.abs(got - want).max()), float(np.abs(want).max())


def parity(reference, x):
    """vgg.load of torch.save'd weights against torchvision: logits and hooked features."""
    captured = {}
    hooks = [
        reference.features[int(name.split(".")[1])].register_forward_hook(
            lambda _m, _i, out, name=name: captured.__setitem__(name, out.detach().clone().numpy())
        )
        for name in LAYERS
    ]
    with torch.inference_mode():
        want = reference(torch.from_numpy(x)).numpy()
    for h in hooks:
        h.remove()
    with tempfile.TemporaryDirectory() as tmp:
        for legacy in (False, True):
            path = Path(tmp) / f"vgg16_{'legacy' if legacy else 'zip'}.pth"
            torch.save(reference.state_dict(), path, _use_new_zipfile_serialization=not legacy)
            model = vgg.load(path)
            diff, scale = worst(model(x), want)
            ok = diff <= 1e-4 + 1e-4 * scale
            print(f"parity {path.name}: logits max|diff| {diff:.2e} (max|ref| {scale:.2f}) {'ok' if ok else 'FAIL'}")
            feats = model.features(x, layers=LAYERS)
            for name in LAYERS:
                d, s = worst(feats[name], captured[name])
                print(f"  {name}: max|diff| {d:.2e} (max|ref| {s:.2f}) {'ok' if d <= 1e-4 + 1e-4 * s else 'FAIL'}")
            if not ok:
                raise SystemExit("parity failed")
    return model


def cli_ms(threads, iters):
    out = subprocess.run(
        [str(ROOT / "target/release/vgg"), "--threads", str(threads), "bench", "--arch", "vgg16",
         "--input", "1x3x224x224", "--iters", str(iters), "--json"],
        capture_output=True, text=True, check=True,
    ).stdout
    return json.loads(out.strip().splitlines()[-1])["median_ms"]


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--iters", type=int, default=10)
    args = p.parse_args()
    vgg.set_num_threads(args.threads)
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    reference = torchvision.models.vgg16().eval()
    x = np.random.default_rng(0).standard_normal((1, 3, 224, 224)).astype(np.float32)
    model = parity(reference, x)
    tx = torch.from_numpy(x)

    def run_torch():
        with torch.inference_mode():
            reference(tx)

    ours, theirs, cli = [], [], []
    for _ in range(args.rounds):
        ours.append(median_ms(lambda: model(x), args.iters))
        theirs.append(median_ms(run_torch, args.iters))
        cli.append(cli_ms(args.threads, args.iters))
    o, t, c = (statistics.median(v) for v in (ours, theirs, cli))
    rounds = " ".join(f"{a:.0f}/{b:.0f}/{d:.0f}" for a, b, d in zip(ours, theirs, cli))
    print("| threads | Python model(x) ms | torchvision ms | vgg bench ms | Python / torchvision | Python / vgg bench | rounds (Python/torch/CLI) |")
    print("|---|---|---|---|---|---|---|")
    print(f"| {args.threads} | {o:.1f} | {t:.1f} | {c:.1f} | {o / t:.2f} | {o / c:.3f} | {rounds} |")


if __name__ == "__main__":
    main()
