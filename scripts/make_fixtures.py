#!/usr/bin/env python3
"""Regenerate every committed test fixture from the real PyTorch tools.

Pinned versions (the ones the fixtures were made with):
    torch==2.15.0 torchvision==0.29.2 torchsummary==1.5.1 torchinfo==1.8.0 numpy safetensors

    python3 -m venv ../torchenv && ../torchenv/bin/pip install torch==2.15.0 torchvision==0.29.2 \
        torchsummary==1.5.1 torchinfo==1.8.0 safetensors numpy
    ../torchenv/bin/python scripts/make_fixtures.py

Writes under tests/fixtures/:
  summary/*.txt + summary/manifest.json   torchsummary / torchinfo output and the `vgg summary`
                                          arguments that must reproduce it byte for byte
  state_dict_keys.json                    every arch's state_dict keys, shapes and dtypes
  forward/*                               small VGG-style networks (safetensors), inputs and
                                          PyTorch's outputs in eval and train (batch-stat) mode
"""
import contextlib
import io
import json
import os
import sys

import numpy as np
import torch
import torch.nn as nn
import torchinfo
import torchsummary
import torchvision
from safetensors.torch import save_file

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "fixtures")
ARCHS = ["vgg11", "vgg11_bn", "vgg13", "vgg13_bn", "vgg16", "vgg16_bn", "vgg19", "vgg19_bn"]


def parse_cfg(text):
    return [v if v == "M" else int(v) for v in text.split(",")]


def build(arch, num_classes=1000, in_channels=3, cfg=None, batch_norm=False, hidden=4096, pool=7,
          dropout=0.5):
    """A torchvision VGG, or a custom one built by torchvision's own make_layers."""
    if cfg is None:
        model = getattr(torchvision.models, arch)(weights=None, num_classes=num_classes)
    else:
        features = torchvision.models.vgg.make_layers(parse_cfg(cfg), batch_norm=batch_norm)
        model = torchvision.models.VGG(features, num_classes=num_classes, dropout=dropout)
        last = [v for v in parse_cfg(cfg) if v != "M"][-1]
        model.avgpool = nn.AdaptiveAvgPool2d((pool, pool))
        model.classifier = nn.Sequential(
            nn.Linear(last * pool * pool, hidden), nn.ReLU(True), nn.Dropout(dropout),
            nn.Linear(hidden, hidden), nn.ReLU(True), nn.Dropout(dropout),
            nn.Linear(hidden, num_classes))
    if in_channels != 3:
        first = model.features[0]
        model.features[0] = nn.Conv2d(in_channels, first.out_channels, 3, padding=1)
    return model


def freeze(model, part):
    if part:
        for p in getattr(model, part).parameters():
            p.requires_grad_(False)


def captured(fn):
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        result = fn()
    return buf.getvalue(), result


def dims(shape):
    return "x".join(str(d) for d in shape)


def model_args(case):
    args = [case["arch"]]
    if "cfg" in case:
        args += ["--cfg", case["cfg"], "--hidden", str(case["hidden"]), "--pool", str(case["pool"])]
        if case.get("batch_norm"):
            args.append("--batch-norm")
    if "num_classes" in case:
        args += ["--num-classes", str(case["num_classes"])]
    if "freeze" in case:
        args += ["--freeze", case["freeze"]]
    return args


def model_for(case, in_channels):
    model = build(case["arch"], num_classes=case.get("num_classes", 1000), in_channels=in_channels,
                  cfg=case.get("cfg"), batch_norm=case.get("batch_norm", False),
                  hidden=case.get("hidden", 4096), pool=case.get("pool", 7))
    freeze(model, case.get("freeze"))
    return model


def torchsummary_case(case):
    c, h, w = case["input"]
    model = model_for(case, c)
    batch = case.get("batch_size", -1)
    text, _ = captured(lambda: torchsummary.summary(model, (c, h, w), batch_size=batch, device="cpu"))
    args = ["summary"] + model_args(case) + ["--input", dims(case["input"])]
    if batch != -1:
        args += ["--batch-size", str(batch)]
    return text, args


def torchinfo_case(case):
    n, c, h, w = case["input"]
    model = model_for(case, c)
    kwargs = {"input_size": (n, c, h, w), "verbose": 0, "depth": case.get("depth", 3)}
    if "columns" in case:
        kwargs["col_names"] = case["columns"]
    text = str(torchinfo.summary(model, **kwargs)) + "\n"
    # torchinfo 1.8.0 on Python >= 3.11 prints the enum instead of its value; the tool means "(G)".
    for unit, short in (("Units.TERABYTES", "T"), ("Units.GIGABYTES", "G"), ("Units.MEGABYTES", "M")):
        text = text.replace(f"({unit})", f"({short})")
    args = ["summary"] + model_args(case) + ["--format", "torchinfo", "--input", dims(case["input"])]
    if "columns" in case:
        args += ["--columns", ",".join(case["columns"])]
    if "depth" in case:
        args += ["--depth", str(case["depth"])]
    return text, args


def summary_cases():
    cases = []
    for arch in ARCHS:
        for shape in ([3, 224, 224], [3, 64, 64], [3, 32, 32], [1, 48, 48], [3, 100, 150]):
            cases.append({"tool": "torchsummary", "arch": arch, "input": shape})
        cases.append({"tool": "torchinfo", "arch": arch, "input": [1, 3, 224, 224]})
        cases.append({"tool": "torchinfo", "arch": arch, "input": [2, 1, 48, 80],
                      "columns": ["input_size", "output_size", "num_params", "params_percent",
                                  "kernel_size", "mult_adds", "trainable"]})
    cases += [
        {"tool": "torchsummary", "arch": "vgg11", "input": [3, 64, 64], "batch_size": 4},
        {"tool": "torchsummary", "arch": "vgg16", "input": [3, 128, 128], "batch_size": 2},
        {"tool": "torchsummary", "arch": "vgg13_bn", "input": [3, 96, 64], "num_classes": 10},
        {"tool": "torchsummary", "arch": "vgg16_bn", "input": [3, 64, 64], "freeze": "features"},
        {"tool": "torchsummary", "arch": "custom", "cfg": "32,M,64,M,128,128,M", "batch_norm": True,
         "hidden": 256, "pool": 1, "num_classes": 10, "input": [3, 32, 32]},
        {"tool": "torchinfo", "arch": "vgg11_bn", "input": [2, 3, 64, 64], "freeze": "classifier",
         "columns": ["kernel_size", "output_size", "num_params", "mult_adds"]},
        {"tool": "torchinfo", "arch": "vgg16", "input": [1, 3, 224, 224], "depth": 1,
         "columns": ["output_size", "num_params", "params_percent", "mult_adds", "trainable"]},
        {"tool": "torchinfo", "arch": "vgg19_bn", "input": [3, 3, 64, 96], "depth": 2,
         "freeze": "features", "columns": ["num_params", "trainable", "params_percent"]},
        {"tool": "torchinfo", "arch": "vgg13", "input": [1, 3, 32, 32], "depth": 0,
         "columns": ["output_size", "num_params", "mult_adds", "trainable"]},
        {"tool": "torchinfo", "arch": "vgg16_bn", "input": [4, 3, 224, 224], "num_classes": 100},
        {"tool": "torchinfo", "arch": "custom", "cfg": "16,M,32,M,64,M,64,M,64,M", "hidden": 128,
         "pool": 2, "num_classes": 5, "input": [1, 3, 40, 40],
         "columns": ["input_size", "output_size", "num_params", "mult_adds"]},
    ]
    return cases


def write_summaries():
    out = os.path.join(ROOT, "summary")
    os.makedirs(out, exist_ok=True)
    manifest = []
    for case in summary_cases():
        text, args = (torchsummary_case if case["tool"] == "torchsummary" else torchinfo_case)(case)
        name = "_".join([case["tool"]] + args[1:]).replace("--", "").replace(",", "-") + ".txt"
        name = name.replace("/", "-")
        with open(os.path.join(out, name), "w") as f:
            f.write(text)
        manifest.append({"file": name, "args": args})
    with open(os.path.join(out, "manifest.json"), "w") as f:
        json.dump(manifest, f, indent=1)
    print(f"{len(manifest)} summaries")


def write_state_dict_keys():
    keys = {}
    for arch in ARCHS:
        sd = getattr(torchvision.models, arch)(weights=None).state_dict()
        keys[arch] = [[k, list(v.shape), str(v.dtype).replace("torch.", "")] for k, v in sd.items()]
    with open(os.path.join(ROOT, "state_dict_keys.json"), "w") as f:
        json.dump(keys, f, indent=0)


def randomise_bn_stats(model, gen):
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.copy_(torch.randn(m.num_features, generator=gen) * 0.1)
            m.running_var.copy_(torch.rand(m.num_features, generator=gen) + 0.5)
            m.weight.data.copy_(torch.rand(m.num_features, generator=gen) + 0.5)
            m.bias.data.copy_(torch.randn(m.num_features, generator=gen) * 0.1)


FORWARD_CASES = [
    # name, cfg, batch_norm, hidden, pool, num_classes, input shape
    ("tiny_bn", "8,M,16,M,16,16,M,32,M,32,M", True, 32, 7, 10, (2, 3, 64, 64)),
    ("tiny", "8,M,16,M,16,16,M,32,M,32,M", False, 32, 7, 10, (3, 3, 100, 150)),
    ("tiny_pool3", "8,8,M,16,M,24,M", True, 16, 3, 4, (2, 3, 40, 56)),
]


def write_forward():
    out = os.path.join(ROOT, "forward")
    os.makedirs(out, exist_ok=True)
    gen = torch.Generator().manual_seed(0)
    for name, cfg, bn, hidden, pool, classes, shape in FORWARD_CASES:
        torch.manual_seed(1)
        model = build("custom", num_classes=classes, cfg=cfg, batch_norm=bn, hidden=hidden, pool=pool,
                      dropout=0.0)
        with torch.no_grad():
            for p in model.parameters():  # torchvision's init leaves biases 0; test them too
                if p.dim() == 1:
                    p.copy_(torch.randn(p.shape, generator=gen) * 0.1)
            randomise_bn_stats(model, gen)
        x = torch.randn(shape, generator=gen)
        save_file({k: v.contiguous() for k, v in model.state_dict().items()},
                  os.path.join(out, f"{name}.safetensors"))
        np.save(os.path.join(out, f"{name}_input.npy"), x.numpy())
        with torch.no_grad():
            model.eval()
            np.save(os.path.join(out, f"{name}_eval.npy"), model(x).numpy())
            model.train()
            np.save(os.path.join(out, f"{name}_train.npy"), model(x).numpy())
            after = {k: v for k, v in model.state_dict().items() if "running" in k}
        save_file(after, os.path.join(out, f"{name}_running_after_train.safetensors"))
        meta = {"cfg": cfg, "batch_norm": bn, "hidden": hidden, "pool": pool, "num_classes": classes,
                "input": list(shape)}
        with open(os.path.join(out, f"{name}.json"), "w") as f:
            json.dump(meta, f)
    print(f"{len(FORWARD_CASES)} forward cases")


if __name__ == "__main__":
    torch.set_num_threads(2)
    print(f"torch {torch.__version__} torchvision {torchvision.__version__} "
          f"torchinfo {torchinfo.__version__}", file=sys.stderr)
    write_summaries()
    write_state_dict_keys()
    write_forward()
