"""Time torchvision VGG inference (random weights, eval, inference_mode).

Usage: bench_torch.py --arch vgg16 --input 1x3x224x224 --iters 10 --threads 2
Prints one RESULT line (median and min milliseconds), read by bench_compare.py.
"""
import argparse
import time

import torch
import torchvision


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--arch", default="vgg16")
    p.add_argument("--input", default="1x3x224x224")
    p.add_argument("--iters", type=int, default=10)
    p.add_argument("--threads", type=int, default=2)
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    n, c, h, w = (int(d) for d in a.input.split("x"))
    model = getattr(torchvision.models, a.arch)(weights=None).eval()
    x = torch.randn(n, c, h, w)
    times = []
    with torch.inference_mode():
        model(x)  # warm-up
        for _ in range(a.iters):
            t = time.perf_counter()
            model(x)
            times.append((time.perf_counter() - t) * 1e3)
    times.sort()
    print(
        f"RESULT engine=torch arch={a.arch} input={a.input} threads={a.threads} "
        f"median_ms={times[len(times) // 2]:.2f} min_ms={times[0]:.2f} torch={torch.__version__}"
    )


if __name__ == "__main__":
    main()
