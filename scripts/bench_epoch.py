#!/usr/bin/env python3
"""One training epoch of `vgg train` against a plain PyTorch loop on the same ImageFolder,
side by side: each round runs, as fresh processes in turn, `vgg --threads T train … --epochs 1`
and this script's own `--torch` loop, and records each epoch's seconds (the training pass:
loading, decoding, augmenting and the steps; not validation) and each process's peak RSS.
Prints the medians over the rounds and their ratios.

The PyTorch loop is what a user would write for the same run: torchvision's ImageFolder,
`RandomCrop(32, padding=4)`, `RandomHorizontalFlip()`, `ToTensor()`, `Normalize` with
ImageNet's mean and std (`vgg train`'s defaults for 32×32 images), a DataLoader with
`batch_size=64, shuffle=True, num_workers=0`, the same network built by torchvision's
`make_layers` with PyTorch's default init, `nn.CrossEntropyLoss`, and
`SGD(lr=0.01, momentum=0.9, weight_decay=5e-4)`.

    python scripts/make_shapes.py /tmp/shapes
    cargo build --release
    ../torchenv/bin/python scripts/bench_epoch.py --data /tmp/shapes [--rounds 3] [--threads 2,1]
"""
import argparse
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CFG = "32,M,64,M,128,128,M,256,256,M"
NET = ["--arch", "custom", "--cfg", CFG, "--batch-norm", "--hidden", "256", "--pool", "1",
       "--num-classes", "10"]


def timed(command):
    """Runs `command` under /usr/bin/time; returns its stdout+stderr and peak RSS in MiB."""
    out = subprocess.run(["/usr/bin/time", "-f", "PEAK_RSS_KB=%M", *command],
                         capture_output=True, text=True)
    text = out.stdout + out.stderr
    if out.returncode != 0:
        sys.exit(f"{' '.join(command)} failed:\n{text}")
    return text, int(re.search(r"PEAK_RSS_KB=(\d+)", text).group(1)) / 1024


def ours(data, threads):
    with tempfile.TemporaryDirectory() as out:
        text, rss = timed([str(ROOT / "target/release/vgg"), "--threads", threads, "train",
                           *NET, "--data", data, "--epochs", "1", "--out", out])
    seconds = float(re.search(r"img/s, ([\d.]+) s", text).group(1))
    return seconds, rss


def torch(data, threads):
    text, rss = timed([sys.executable, __file__, "--torch", "--data", data,
                       "--threads", threads])
    return float(re.search(r"EPOCH_SECONDS=([\d.]+)", text).group(1)), rss


def torch_epoch(data, threads):
    import torch
    import torchvision
    from torchvision import transforms

    sys.path.insert(0, str(ROOT / "scripts"))
    from make_fixtures import build

    torch.set_num_threads(int(threads))
    torch.manual_seed(0)
    transform = transforms.Compose([
        transforms.RandomCrop(32, padding=4), transforms.RandomHorizontalFlip(),
        transforms.ToTensor(),
        transforms.Normalize([0.485, 0.456, 0.406], [0.229, 0.224, 0.225])])
    dataset = torchvision.datasets.ImageFolder(os.path.join(data, "train"), transform)
    loader = torch.utils.data.DataLoader(dataset, batch_size=64, shuffle=True, num_workers=0)
    model = build("custom", num_classes=10, cfg=CFG, batch_norm=True, hidden=256, pool=1)
    model.train()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, weight_decay=5e-4)
    loss_fn = torch.nn.CrossEntropyLoss()
    start = time.perf_counter()
    for x, y in loader:
        optimizer.zero_grad()
        loss_fn(model(x), y).backward()
        optimizer.step()
    print(f"EPOCH_SECONDS={time.perf_counter() - start:.3f}")


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--data", required=True)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", default="2,1")
    parser.add_argument("--torch", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.torch:
        return torch_epoch(args.data, args.threads)
    print("| threads | ours s | PyTorch s | throughput vs PyTorch | ours peak RSS MiB | "
          "PyTorch peak RSS MiB | rounds (ours/PyTorch s) |")
    print("|---|---|---|---|---|---|---|")
    for threads in args.threads.split(","):
        a, b = [], []
        for _ in range(args.rounds):
            a.append(ours(args.data, threads))
            b.append(torch(args.data, threads))
        sa = statistics.median(s for s, _ in a)
        sb = statistics.median(s for s, _ in b)
        ra = statistics.median(r for _, r in a)
        rb = statistics.median(r for _, r in b)
        rounds = " ".join(f"{x:.1f}/{y:.1f}" for (x, _), (y, _) in zip(a, b))
        print(f"| {threads} | {sa:.2f} | {sb:.2f} | {sb / sa:.2f}× | {ra:.0f} | {rb:.0f} | "
              f"{rounds} |", flush=True)


if __name__ == "__main__":
    main()
