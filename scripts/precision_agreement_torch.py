#!/usr/bin/env python3
"""PyTorch's bf16 (``torch.autocast("cpu", dtype=torch.bfloat16)``) against its own f32, in the
setting of ``cargo run --release --example precision_agreement``. With ``--mode rounded``, the
lowest error any bf16 inference can have instead: every convolution and linear layer's weights
and inputs rounded to bf16 (to nearest even), their exact products summed in f32, everything
else in f32 (``vdpbf16ps``'s arithmetic without a Winograd transform). Both modes use torchvision's architectures
with random weights (torchvision's init, ``torch.manual_seed(0)``), N images of N(0, 1) noise
at SIZE x SIZE from the same fixed-seed generator as the example (Box-Muller on the same 64-bit
LCG), batches of 8. Prints the same Markdown table: top-1 agreement with f32, and the median and
maximum relative logit error (max |bf16 - f32| over an image's logits / max |f32 logit|).

    ../torchenv/bin/python scripts/precision_agreement_torch.py [--images 256] [--size 224]
        [--archs vgg11,vgg13,...] [--threads 2] [--mode autocast|rounded]

Pinned: torch==2.15.0 torchvision==0.29.2 numpy==2.4.6.
"""
import argparse
import copy
import math

import numpy as np
import torch
import torchvision

ARCHS = ["vgg11", "vgg11_bn", "vgg13", "vgg13_bn", "vgg16", "vgg16_bn", "vgg19", "vgg19_bn"]
BATCH = 8
MASK = (1 << 64) - 1


class Normal:
    """The example's generator: x <- x * 6364136223846793005 + 1442695040888963407 (mod 2^64),
    uniform ((x >> 40) + 0.5) / 2^24, Box-Muller's cosine branch, in f32 as the example."""

    A, C, BLOCK = 6364136223846793005, 1442695040888963407, 4096

    def __init__(self, seed):
        self.state = seed
        # Jump-ahead tables: state_{k} = A_k * state_0 + C_k (mod 2^64), k = 1..BLOCK.
        a_k, c_k, a, c = [], [], 1, 0
        for _ in range(self.BLOCK):
            a, c = (a * self.A) & MASK, (c * self.A + self.C) & MASK
            a_k.append(a)
            c_k.append(c)
        self.a_k = np.array(a_k, dtype=np.uint64)
        self.c_k = np.array(c_k, dtype=np.uint64)

    def states(self, n):
        out = []
        with np.errstate(over="ignore"):
            while n > 0:
                block = self.a_k * np.uint64(self.state) + self.c_k  # wraps mod 2^64
                take = min(n, self.BLOCK)
                out.append(block[:take])
                self.state = int(block[take - 1])
                n -= take
        return np.concatenate(out)

    def samples(self, n):
        uniform = ((self.states(2 * n) >> np.uint64(40)).astype(np.float32) + np.float32(0.5)) / np.float32(1 << 24)
        u, v = uniform[0::2], uniform[1::2]
        return np.sqrt(np.float32(-2.0) * np.log(u)) * np.cos(np.float32(2 * math.pi) * v)


def bf16(t):
    return t.bfloat16().float()


def rounded_copy(model):
    """The model with every Conv2d/Linear weight rounded to bf16 and its input rounded as it
    enters the layer; products of two bf16 values are exact in f32, so the layer sums exact
    products in f32."""
    low = copy.deepcopy(model)
    for m in low.modules():
        if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear)):
            m.weight.data = bf16(m.weight.data)
            m.register_forward_pre_hook(lambda _m, inputs: (bf16(inputs[0]),))
    return low


def compare(exact, low):
    agree = exact.argmax(1) == low.argmax(1)
    scale = np.abs(exact).max(1)
    err = np.abs(exact - low).max(1) / scale
    return list(zip(agree, err))


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--images", type=int, default=256)
    p.add_argument("--size", type=int, default=224)
    p.add_argument("--archs", default=",".join(ARCHS))
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--mode", choices=["autocast", "rounded"], default="autocast")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    batches = -(-args.images // BATCH)
    print(f"{batches * BATCH} N(0,1) images at {args.size}x{args.size}, torch.manual_seed(0) weights, "
          f"torch {torch.__version__}, bf16 by {args.mode}\n")
    print("| arch | top-1 agreement | median rel. logit error | max rel. logit error |")
    print("|---|---|---|---|")
    for arch in args.archs.split(","):
        torch.manual_seed(0)
        model = getattr(torchvision.models, arch)(weights=None).eval()
        rounded = rounded_copy(model) if args.mode == "rounded" else None
        normal = Normal(1)
        results = []
        for _ in range(batches):
            x = torch.from_numpy(normal.samples(BATCH * 3 * args.size * args.size)).reshape(
                BATCH, 3, args.size, args.size)
            with torch.inference_mode():
                exact = model(x).numpy()
                if rounded is not None:
                    low = rounded(x).numpy()
                else:
                    with torch.autocast("cpu", dtype=torch.bfloat16):
                        low = model(x).float().numpy()
            results += compare(exact, low)
        agree = sum(bool(a) for a, _ in results)
        errors = sorted(float(e) for _, e in results)
        print(f"| {arch} | {100 * agree / len(results):.2f}% ({agree}/{len(results)}) | "
              f"{errors[len(errors) // 2]:.2e} | {errors[-1]:.2e} |", flush=True)


if __name__ == "__main__":
    main()
