#!/usr/bin/env python3
"""Our engine vs PyTorch, side by side in one run: for each case and thread count, run
`vgg bench` and `scripts/bench_torch.py` alternately (A B A B …, `--rounds` times, each a
fresh process timing `--iters` forward passes after warm-up), then print the medians of the
per-round medians and their ratio. Alternating cancels slow phases of a shared machine.

    cargo build --release
    ../torchenv/bin/python scripts/bench_compare.py [--rounds 3] [--iters 10] [--threads 2,1]
        [--cases vgg16:1x3x224x224,...] [--model-args "--num-classes 10 ..."] [--train]
        [-- extra args for vgg bench only, e.g. --engine reference]

`--model-args` go to both sides (the network: --num-classes, --cfg, --batch-norm, --hidden,
--pool); `--train` times one optimisation step on both sides instead of a forward pass.
`--baseline BIN` adds another build of ours (an earlier commit's `vgg`) to each round, in
the same rotation (baseline, ours, PyTorch), to show a change is within noise.
"""
import argparse
import json
import re
import statistics
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_CASES = ("vgg16:1x3x224x224,vgg16:8x3x224x224,vgg16:1x3x64x64,"
                 "vgg16_bn:1x3x224x224,vgg19:1x3x224x224")


def ours(case_args, threads, extra, binary=ROOT / "target/release/vgg"):
    out = subprocess.run([str(binary), "--threads", threads, "bench", *case_args,
                          "--json", *extra], capture_output=True, text=True, check=True).stdout
    return json.loads(out.strip().splitlines()[-1])["median_ms"]


def torch(case_args, threads):
    out = subprocess.run([sys.executable, str(ROOT / "scripts/bench_torch.py"), *case_args,
                          "--threads", threads], capture_output=True, text=True, check=True).stdout
    line = next(l for l in out.splitlines() if l.startswith("RESULT"))
    return float(re.search(r"median_ms=([\d.]+)", line).group(1))


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--iters", type=int, default=10)
    p.add_argument("--threads", default="2,1")
    p.add_argument("--cases", default=DEFAULT_CASES)
    p.add_argument("--model-args", default="")
    p.add_argument("--train", action="store_true")
    p.add_argument("--baseline", help="another vgg binary to time in the same rounds")
    args, extra = p.parse_known_args()
    extra = [e for e in extra if e != "--"]
    base = " baseline ms | ours / baseline |" if args.baseline else ""
    print(f"| case | threads | ours ms | PyTorch ms | ours / PyTorch |{base} rounds (ours/PyTorch) |")
    print("|---|---|---|---|---|" + ("---|---|" if args.baseline else "") + "---|")
    for case in args.cases.split(","):
        arch, shape = case.split(":")
        case_args = ["--arch", arch, "--input", shape, "--iters", str(args.iters),
                     *args.model_args.split(), *(["--train"] if args.train else [])]
        for t in args.threads.split(","):
            a, b, c = [], [], []
            for _ in range(args.rounds):
                if args.baseline:
                    c.append(ours(case_args, t, extra, args.baseline))
                a.append(ours(case_args, t, extra))
                b.append(torch(case_args, t))
            o, q = statistics.median(a), statistics.median(b)
            rounds = " ".join(f"{x:.0f}/{y:.0f}" for x, y in zip(a, b))
            label = f"{arch} {args.model_args} {shape}".replace("  ", " ")
            base = ""
            if args.baseline:
                m = statistics.median(c)
                base = f" {m:.1f} | {o / m:.2f} |"
                rounds += " (baseline " + " ".join(f"{x:.0f}" for x in c) + ")"
            print(f"| {label} | {t} | {o:.1f} | {q:.1f} | {o / q:.2f} |{base} {rounds} |", flush=True)


if __name__ == "__main__":
    sys.exit(main())
