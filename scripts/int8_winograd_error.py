"""Direct against Winograd-domain int8: what each loses on one 3×3 convolution layer.

How the int8 engine's convolution was chosen, measured: the same layer (random weights, He
normal or He uniform, a ReLU-like input: |N(0, 1)|) is computed in f64 and in int8 these
ways, each with symmetric per-output-channel weights:

- direct: u8 inputs over [0, max] (one activation scale), s8 weights (`--conv im2col`);
- Winograd F(2,3): tiles V = Bᵀ d B and filters U = G g Gᵀ quantised to s8 with one scale
  each (V is signed, so it needs s8 × s8 products), the output transform in float;
- Winograd F(4,3): the same with F(4,3)'s matrices;
- each Winograd form with one scale per tile position (per position and output channel for
  the filters), the finer choice Winograd-domain int8 papers make;
- each Winograd form with one scale per tile *and* position, over the tile's channels, taken
  from the tile itself (what `--precision int8` runs, in F(2,3)): the GEMM sums over
  channels only, so such a scale factors out of every sum.

Weights get 8 bits (±127, `vpdpbusd`) and 7 (±64, the AVX2 emulation's limit). Prints the
relative RMS error and max |error| / max |output| of each. numpy only:
`python3 scripts/int8_winograd_error.py [channels] [size]` (default 64 channels, 28×28).
"""

import sys

import numpy as np

F23 = (
    np.array([[1, 0, -1, 0], [0, 1, 1, 0], [0, -1, 1, 0], [0, 1, 0, -1]], float),
    np.array([[1, 0, 0], [0.5, 0.5, 0.5], [0.5, -0.5, 0.5], [0, 0, 1]], float),
    np.array([[1, 1, 1, 0], [0, 1, -1, -1]], float),
    2,
)
F43 = (
    np.array(
        [
            [4, 0, -5, 0, 1, 0],
            [0, -4, -4, 1, 1, 0],
            [0, 4, -4, -1, 1, 0],
            [0, -2, -1, 2, 1, 0],
            [0, 2, -1, -2, 1, 0],
            [0, 4, 0, -5, 0, 1],
        ],
        float,
    ),
    np.array(
        [
            [1 / 4, 0, 0],
            [-1 / 6, -1 / 6, -1 / 6],
            [-1 / 6, 1 / 6, -1 / 6],
            [1 / 24, 1 / 12, 1 / 6],
            [1 / 24, -1 / 12, 1 / 6],
            [0, 0, 1],
        ],
        float,
    ),
    np.array([[1, 1, 1, 1, 1, 0], [0, 1, -1, 2, -2, 0], [0, 1, 1, 4, 4, 0], [0, 1, -1, 8, -8, 1]], float),
    4,
)


def quantise(x, levels, axis=None):
    """Symmetric (or, for non-negative x with `levels` 255, unsigned) rounding to `levels`;
    one scale over `axis` (all of x when None)."""
    m = np.abs(x).max(axis=axis, keepdims=axis is not None)
    scale = np.where(m > 0, m / levels, 1.0)
    return np.round(x / scale), scale


def direct(x, w):
    c, h, wd = x.shape
    p = np.pad(x, ((0, 0), (1, 1), (1, 1)))
    cols = np.stack([p[:, ky : ky + h, kx : kx + wd] for ky in range(3) for kx in range(3)], 1)
    return np.einsum("kct,cthw->khw", w.reshape(w.shape[0], c, 9), cols)


def int8_direct(x, w, weight_levels):
    qx, sx = quantise(x, 255)
    qw, sw = quantise(w, weight_levels, axis=(1, 2, 3))
    return direct(qx, qw) * sx * sw.reshape(-1, 1, 1)


def int8_winograd(x, w, transform, weight_levels, scales="one"):
    """`scales`: "one" per operand, "position" per tile position, "tile" per tile and position."""
    bt, g, at, m = transform
    t = m + 2
    c, h, wd = x.shape
    tiles_y, tiles_x = -(-h // m), -(-wd // m)
    p = np.zeros((c, tiles_y * m + 2, tiles_x * m + 2))
    p[:, 1 : h + 1, 1 : wd + 1] = x
    d = np.stack(
        [p[:, ty * m : ty * m + t, tx * m : tx * m + t] for ty in range(tiles_y) for tx in range(tiles_x)], 1
    )
    v = np.einsum("ij,cnjk,lk->cnil", bt, d, bt)
    u = np.einsum("ij,kcjl,ml->kcim", g, w, g)
    if scales == "one":
        qv, sv = quantise(v, 127)
        qu, su = quantise(u, weight_levels, axis=(1, 2, 3))
        mm = np.einsum("kcij,cnij->knij", qu, qv) * sv * su.reshape(-1, 1, 1, 1)
    else:
        qv, sv = quantise(v, 127, axis=(0, 1) if scales == "position" else 0)
        qu, su = quantise(u, weight_levels, axis=1)
        mm = np.einsum("kcij,cnij->knij", qu, qv) * sv * su
    y = np.einsum("ij,knjl,ml->knim", at, mm, at)
    out = np.zeros((w.shape[0], tiles_y * m, tiles_x * m))
    for n in range(tiles_y * tiles_x):
        ty, tx = divmod(n, tiles_x)
        out[:, ty * m : ty * m + m, tx * m : tx * m + m] = y[:, n]
    return out[:, :h, :wd]


def main():
    c = int(sys.argv[1]) if len(sys.argv) > 1 else 64
    size = int(sys.argv[2]) if len(sys.argv) > 2 else 28
    print(f"{c} -> {c} channels at {size}x{size}; relative RMS error / max error over max output")
    print("| int8 method | He normal, 8-bit w | He normal, 7-bit w | He uniform, 8-bit w | He uniform, 7-bit w |")
    print("|---|---|---|---|---|")
    methods = [("direct (u8 × s8)", None, None)]
    for name, transform in [("F(2,3)", F23), ("F(4,3)", F43)]:
        methods += [
            (f"Winograd {name}, one scale", transform, "one"),
            (f"Winograd {name}, a scale per position", transform, "position"),
            (f"Winograd {name}, a scale per tile and position", transform, "tile"),
        ]
    rng = np.random.default_rng(0)
    x = np.abs(rng.standard_normal((c, size, size)))
    weights = [
        rng.standard_normal((c, c, 3, 3)) * np.sqrt(2 / (9 * c)),
        rng.uniform(-1, 1, (c, c, 3, 3)) * np.sqrt(6 / (9 * c)),
    ]
    wants = [direct(x, w) for w in weights]
    for name, transform, scales in methods:
        cells = []
        for w, want in zip(weights, wants):
            for levels in (127, 64):
                if transform is None:
                    got = int8_direct(x, w, levels)
                else:
                    got = int8_winograd(x, w, transform, levels, scales)
                e = got - want
                rms = np.sqrt((e**2).sum() / (want**2).sum())
                cells.append(f"{100 * rms:.2f}% / {100 * np.abs(e).max() / np.abs(want).max():.2f}%")
        print(f"| {name} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
