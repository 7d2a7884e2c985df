"""Time torchvision VGG inference (random weights, eval, inference_mode), or with --train
one optimisation step (train mode, cross-entropy, backward, SGD momentum 0.9 / wd 5e-4).

Usage: bench_torch.py --arch vgg16 --input 1x3x224x224 --iters 10 --threads 2 [--train]
           [--num-classes K] [--cfg 32,M,64,M --batch-norm --hidden H --pool P]
Prints one RESULT line (median and min milliseconds), read by bench_compare.py.
"""
import argparse
import time

import torch
import torchvision

from make_fixtures import build


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--arch", default="vgg16")
    p.add_argument("--input", default="1x3x224x224")
    p.add_argument("--iters", type=int, default=10)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--train", action="store_true")
    p.add_argument("--num-classes", type=int, default=1000)
    p.add_argument("--cfg")
    p.add_argument("--batch-norm", action="store_true")
    p.add_argument("--hidden", type=int, default=4096)
    p.add_argument("--pool", type=int, default=7)
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    n, c, h, w = (int(d) for d in a.input.split("x"))
    model = build(a.arch, num_classes=a.num_classes, cfg=a.cfg, batch_norm=a.batch_norm,
                  hidden=a.hidden, pool=a.pool)
    x = torch.randn(n, c, h, w)
    if a.train:
        model.train()
        y = torch.arange(n) % a.num_classes
        sgd = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9, weight_decay=5e-4)

        def run():
            sgd.zero_grad()
            torch.nn.functional.cross_entropy(model(x), y).backward()
            sgd.step()
        context = torch.enable_grad()
    else:
        model.eval()

        def run():
            model(x)
        context = torch.inference_mode()
    times = []
    with context:
        for _ in range(2 if a.train else 1):  # warm-up (the first step allocates momentum)
            run()
        for _ in range(a.iters):
            t = time.perf_counter()
            run()
            times.append((time.perf_counter() - t) * 1e3)
    times.sort()
    print(
        f"RESULT engine=torch arch={a.arch} input={a.input} threads={a.threads} train={a.train} "
        f"median_ms={times[len(times) // 2]:.2f} min_ms={times[0]:.2f} torch={torch.__version__}"
    )


if __name__ == "__main__":
    main()
