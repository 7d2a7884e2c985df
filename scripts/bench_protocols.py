#!/usr/bin/env python3
"""Throughput of the paper's evaluation protocols on vgg16 (random weights), ours against the
same protocols in PyTorch (scripts/make_protocol_fixtures.py's reference implementation),
side by side: each round runs `vgg evaluate --protocol P` and then the PyTorch loop, in fresh
processes, on the same ImageFolder of photo-sized images (500×375), with the same thread
count; both time decoding, resizing and the network, not loading or compiling the model.
Prints per protocol the median images/s of each and their ratio.

    cargo build --release
    ../torchenv/bin/python scripts/bench_protocols.py [--images 3] [--rounds 2] [--threads 2]
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PROTOCOLS = ["center", "dense", "multi-crop", "dense+multi-crop"]
SCALES = [256, 384, 512]


def make_data(work, images):
    """An ImageFolder of synthetic photos and a random vgg16 checkpoint."""
    import torch
    import torchvision
    sys.path.insert(0, os.path.join(ROOT, "scripts"))
    from make_fixtures import synthetic_image
    for i in range(images):
        folder = os.path.join(work, "data", f"class{i % 2}")
        os.makedirs(folder, exist_ok=True)
        synthetic_image((500, 375), "RGB", 50 + i).save(os.path.join(folder, f"{i}.jpg"), quality=90)
    torch.manual_seed(0)
    weights = os.path.join(work, "vgg16.pth")
    torch.save(torchvision.models.vgg16(weights=None).state_dict(), weights)
    return os.path.join(work, "data"), weights


def ours(data, weights, protocol, threads):
    args = [os.path.join(ROOT, "target/release/vgg"), "--threads", str(threads), "evaluate",
            "--weights", weights, "--data", data, "--protocol", protocol, "--json"]
    if protocol != "center":
        args += ["--scales", ",".join(map(str, SCALES))]
    out = subprocess.run(args, check=True, capture_output=True, text=True).stdout
    return json.loads(out)["images_per_s"]


def pytorch(data, weights, protocol, threads):
    """One fresh process: the reference protocols over the folder, timed after loading."""
    code = f"""
import os, sys, time, torch, torchvision
from PIL import Image
sys.path.insert(0, {os.path.join(ROOT, 'scripts')!r})
import make_protocol_fixtures as ref
torch.set_num_threads({threads})
model = torchvision.models.vgg16(weights=None)
model.load_state_dict(torch.load({weights!r}, weights_only=True))
model.eval()
dense = ref.dense_form(model)
paths = sorted(os.path.join(d, f) for d, _, fs in os.walk({data!r}) for f in fs)
start = time.perf_counter()
with torch.no_grad():
    for path in paths:
        img = Image.open(path).convert("RGB")
        if {protocol!r} == "center":
            ref.center_posterior(model, img)
            continue
        for q in {SCALES!r}:
            x = ref.preprocess(img, q)
            if "dense" in {protocol!r}:
                ref.dense_posterior(dense, x)
            if "multi-crop" in {protocol!r}:
                ref.multi_crop_posterior(model, x, 224)
print(len(paths) / (time.perf_counter() - start))
"""
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True)
    return float(out.stdout.strip().splitlines()[-1])


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--images", type=int, default=3)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--protocols", default=",".join(PROTOCOLS))
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as work:
        data, weights = make_data(work, args.images)
        print(f"vgg16, {args.images} images of 500x375, scales {SCALES}, {args.threads} threads, "
              f"{args.rounds} rounds (ours, PyTorch alternating)")
        print(f"{'protocol':18} {'ours img/s':>11} {'PyTorch img/s':>14} {'speed-up':>9}")
        for protocol in args.protocols.split(","):
            a, b = [], []
            for _ in range(args.rounds):
                a.append(ours(data, weights, protocol, args.threads))
                b.append(pytorch(data, weights, protocol, args.threads))
            ma, mb = statistics.median(a), statistics.median(b)
            print(f"{protocol:18} {ma:11.3f} {mb:14.3f} {ma / mb:8.2f}x   "
                  f"(rounds: ours {', '.join(f'{v:.3f}' for v in a)}; "
                  f"PyTorch {', '.join(f'{v:.3f}' for v in b)})", flush=True)


if __name__ == "__main__":
    main()
