#!/usr/bin/env python3
"""Regenerate every committed test fixture from the real PyTorch tools.

Pinned versions (the ones the fixtures were made with):
    torch==2.15.0 torchvision==0.29.2 torchsummary==1.5.1 torchinfo==1.8.0 numpy safetensors

    python3 -m venv ../torchenv && ../torchenv/bin/pip install torch==2.15.0 torchvision==0.29.2 \
        torchsummary==1.5.1 torchinfo==1.8.0 safetensors numpy
    ../torchenv/bin/python scripts/make_fixtures.py [summaries] [keys] [forward] [images] [labels] [classify] [train] [gradcam] [schedules]

Writes under tests/fixtures/:
  summary/*.txt + summary/manifest.json   torchsummary / torchinfo output and the `vgg summary`
                                          arguments that must reproduce it byte for byte
  state_dict_keys.json                    every arch's state_dict keys, shapes and dtypes
  images/*                                test images, torchvision's uint8 crops of them (PNG)
                                          and one ImageClassification batch (.npy)
  images/tiny_bn_probs.json               torchvision's class probabilities for those images
  imagefolder/, imagefolder_reference.json  an ImageFolder and PyTorch's top-1/top-5 on it
  schedules.json                          learning rates of PyTorch's schedulers, per epoch
  train/*                                 gradients and 20-step SGD / AdamW weights of tiny_pool3
  ../../src/data/imagenet_classes.txt     torchvision's ImageNet-1k class names
  gradcam/*                               Grad-CAM of one image's top class through tiny_bn: the
                                          map at feature resolution and upsampled to 224×224 (.npy)
  forward/*                               small VGG-style networks (safetensors, zip .pth and
                                          legacy .pth), inputs and PyTorch's outputs in eval and
                                          train (batch-stat) mode, and every module's activation
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


def head_modules(head, width):
    """The classifier of a `--head` item list (N, relu, dropout[=P], bn, softmax) on `width`
    input features."""
    modules = []
    for item in head.split(","):
        if item == "relu":
            modules.append(nn.ReLU(True))
        elif item.startswith("dropout"):
            modules.append(nn.Dropout(float(item.partition("=")[2] or 0.5)))
        elif item == "bn":
            modules.append(nn.BatchNorm1d(width))
        elif item == "softmax":
            modules.append(nn.Softmax(dim=1))
        else:
            modules.append(nn.Linear(width, int(item)))
            width = int(item)
    return nn.Sequential(*modules)


def build(arch, num_classes=1000, in_channels=3, cfg=None, batch_norm=False, hidden=4096, pool=7,
          dropout=0.5, head=None):
    """A torchvision VGG, or a custom one built by torchvision's own make_layers (with
    torchvision's head, or the `--head` item list `head`)."""
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
        if head:
            model.classifier = head_modules(head, last * pool * pool)
    if in_channels != 3:
        first = model.features[0]
        model.features[0] = nn.Conv2d(in_channels, first.out_channels, 3, padding=1)
    return model


def dense_form(model):
    """The fully-convolutional net of the paper's §3.2: features, then fc6 as a pool x pool conv
    and fc7/fc8 as 1x1 convs (no avgpool). Same state-dict keys as the original, 4-D weights:
    fc6 is exact as view(hidden, C, pool, pool) because torch.flatten of the pooled CHW map is
    C-major. The load is strict=True, which documents the key layout."""
    from collections import OrderedDict
    channels = [m for m in model.features if isinstance(m, nn.Conv2d)][-1].out_channels
    pool = model.avgpool.output_size[0] if isinstance(model.avgpool.output_size, tuple) \
        else model.avgpool.output_size
    layers, converted, first = [], model.state_dict(), True
    for i, m in enumerate(model.classifier):
        if isinstance(m, nn.Linear):
            k = pool if first else 1
            in_channels = channels if first else m.in_features
            layers.append(nn.Conv2d(in_channels, m.out_features, k))
            converted[f"classifier.{i}.weight"] = m.weight.view(m.out_features, -1, k, k)
            first = False
        elif isinstance(m, nn.BatchNorm1d):
            layers.append(nn.BatchNorm2d(m.num_features))
        else:
            layers.append(m)
    dense = nn.Sequential(OrderedDict(features=model.features,
                                      classifier=nn.Sequential(*layers)))
    dense.load_state_dict(converted, strict=True)
    return dense.eval()


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
        args += ["--cfg", case["cfg"]]
        args += ["--head", case["head"]] if "head" in case else ["--hidden", str(case["hidden"])]
        args += ["--pool", str(case["pool"])]
        if case.get("batch_norm"):
            args.append("--batch-norm")
    if "num_classes" in case:
        args += ["--num-classes", str(case["num_classes"])]
    if "freeze" in case:
        args += ["--freeze", case["freeze"]]
    if case.get("dense"):
        args.append("--dense")
    return args


def model_for(case, in_channels):
    model = build(case["arch"], num_classes=case.get("num_classes", 1000), in_channels=in_channels,
                  cfg=case.get("cfg"), batch_norm=case.get("batch_norm", False),
                  hidden=case.get("hidden", 4096), pool=case.get("pool", 7), head=case.get("head"))
    freeze(model, case.get("freeze"))
    return dense_form(model) if case.get("dense") else model


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
        {"tool": "torchsummary", "arch": "vgg16", "input": [3, 384, 384], "dense": True},
        {"tool": "torchsummary", "arch": "vgg11_bn", "input": [3, 224, 288], "dense": True},
        {"tool": "torchinfo", "arch": "vgg16", "input": [1, 3, 384, 384], "dense": True},
        {"tool": "torchinfo", "arch": "custom", "cfg": "16,M,32,M,64,M", "hidden": 32, "pool": 2,
         "num_classes": 5, "dense": True, "input": [2, 3, 40, 56],
         "columns": ["input_size", "output_size", "num_params", "kernel_size", "mult_adds"]},
        {"tool": "torchinfo", "arch": "custom", "cfg": "16,M,32,M,64,M,64,M,64,M", "hidden": 128,
         "pool": 2, "num_classes": 5, "input": [1, 3, 40, 40],
         "columns": ["input_size", "output_size", "num_params", "mult_adds"]},
        # Configured heads (Keras-style transfer learning): BatchNorm1d and Softmax modules.
        {"tool": "torchsummary", "arch": "custom", "cfg": "8,M,16,M", "pool": 2,
         "head": "64,relu,bn,32,relu,bn,4,softmax", "input": [3, 32, 32]},
        {"tool": "torchinfo", "arch": "custom", "cfg": "8,M,16,M", "batch_norm": True, "pool": 2,
         "head": "64,bn,relu,dropout=0.2,4,softmax", "input": [2, 3, 32, 48],
         "columns": ["input_size", "output_size", "num_params", "kernel_size", "mult_adds"]},
        {"tool": "torchinfo", "arch": "custom", "cfg": "16,M,32,M", "pool": 2,
         "head": "64,relu,bn,5,softmax", "dense": True, "input": [2, 3, 40, 56],
         "columns": ["input_size", "output_size", "num_params", "kernel_size", "mult_adds"]},
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


# Every module's output for these networks, at a small input (keeps the files small).
ACTIVATION_CASES = {"tiny_bn": (1, 3, 32, 32), "tiny": (2, 3, 32, 40)}


def write_activations(model, shape, gen, prefix):
    """Each module's output (cloned: the in-place ReLU overwrites its input) in eval mode."""
    model.eval()
    x = torch.randn(shape, generator=gen)
    outputs = {}
    hooks = []
    for path, module in model.named_modules():
        if path and not isinstance(module, nn.Sequential):
            hooks.append(module.register_forward_hook(
                lambda m, i, o, path=path: outputs.__setitem__(path, o.detach().clone())))
    with torch.no_grad():
        model(x)
    for h in hooks:
        h.remove()
    np.save(f"{prefix}_act_input.npy", x.numpy())
    save_file({k: v.contiguous() for k, v in outputs.items()}, f"{prefix}_activations.safetensors")


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
        torch.save(model.state_dict(), os.path.join(out, f"{name}.pth"))
        torch.save(model.state_dict(), os.path.join(out, f"{name}_legacy.pth"),
                   _use_new_zipfile_serialization=False)
        np.save(os.path.join(out, f"{name}_input.npy"), x.numpy())
        if name in ACTIVATION_CASES:  # before the training step below changes BN statistics
            write_activations(model, ACTIVATION_CASES[name], gen, os.path.join(out, name))
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


# Test images: (file, size (w, h), PIL mode) — landscape, portrait, smaller than the crop, grey,
# RGBA, palette; JPEG, PNG, WebP, BMP, GIF.
IMAGES = [
    ("landscape.jpg", (500, 375), "RGB"),
    ("portrait.jpg", (240, 320), "RGB"),
    ("small.png", (150, 100), "RGB"),
    ("grey.png", (300, 300), "L"),
    ("rgba.png", (320, 256), "RGBA"),
    ("odd.webp", (257, 263), "RGB"),
    ("wide.bmp", (400, 90), "RGB"),
    ("anim.gif", (260, 240), "P"),
]
# Preprocessing presets exercised: torchvision's default and a smaller custom one.
PRESETS = {"default": (256, 224), "small": (72, 64)}


def synthetic_image(size, mode, seed):
    """A photo-like image: smooth colour fields, edges, texture and noise."""
    from PIL import Image
    w, h = size
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float64)
    channels = []
    for c in range(3):
        fx, fy, phase = rng.uniform(0.01, 0.08, 2).tolist() + [rng.uniform(0, 6)]
        field = 128 + 80 * np.sin(fx * xx + phase) * np.cos(fy * yy)
        field += 40 * ((xx // (17 + 5 * c) + yy // 23) % 2)  # hard edges
        field += rng.normal(0, 6, size=(h, w))
        channels.append(field)
    rgb = np.clip(np.stack(channels, -1), 0, 255).astype(np.uint8)
    img = Image.fromarray(rgb, "RGB")
    if mode == "L":
        return img.convert("L")
    if mode == "RGBA":
        alpha = np.clip(255 * (xx / w), 0, 255).astype(np.uint8)
        return Image.fromarray(np.dstack([rgb, alpha]), "RGBA")
    if mode == "P":
        return img.convert("P", palette=Image.ADAPTIVE, colors=64)
    return img


def write_images():
    """Images, and torchvision's uint8 crops of them (before scaling/normalising) as PNG."""
    from PIL import Image
    from torchvision.transforms import v2 as _  # noqa: F401  (same functional ops as v1)
    import torchvision.transforms.functional as F
    out = os.path.join(ROOT, "images")
    os.makedirs(out, exist_ok=True)
    for i, (name, size, mode) in enumerate(IMAGES):
        img = synthetic_image(size, mode, i)
        path = os.path.join(out, name)
        if name.endswith(".jpg"):
            img.save(path, quality=90)
        else:
            img.save(path)
        decoded = Image.open(path).convert("RGB")
        for preset, (resize, crop) in PRESETS.items():
            resized = F.resize(decoded, resize, interpolation=F.InterpolationMode.BILINEAR, antialias=True)
            cropped = F.center_crop(resized, crop)
            cropped.save(os.path.join(out, f"{name}.{preset}.crop.png"))
    # The exact float tensors torchvision's ImageClassification gives, for two images.
    from torchvision.transforms._presets import ImageClassification
    transform = ImageClassification(crop_size=224)
    batch = [transform(Image.open(os.path.join(out, n)).convert("RGB")) for n in ("rgba.png",)]
    np.save(os.path.join(out, "imagenet_batch.npy"), torch.stack(batch).numpy())
    # A portrait photo stored sideways with EXIF orientation 6 ("rotate 90° clockwise to view").
    exif = Image.Exif()
    exif[0x0112] = 6
    synthetic_image((200, 120), "RGB", 99).save(os.path.join(out, "exif_rotated.jpg"), quality=90, exif=exif)
    # Broken inputs: a truncated JPEG, a text file named .png, a 1x1 image.
    jpeg = open(os.path.join(out, "landscape.jpg"), "rb").read()
    broken = os.path.join(out, "broken")
    os.makedirs(broken, exist_ok=True)
    open(os.path.join(broken, "truncated.jpg"), "wb").write(jpeg[: len(jpeg) // 3])
    open(os.path.join(broken, "notes.png"), "w").write("this is not an image\n")
    Image.new("RGB", (1, 1), (200, 10, 10)).save(os.path.join(broken, "tiny.png"))
    print(f"{len(IMAGES)} images")


def write_cmyk():
    """A CMYK JPEG (as print workflows save them) and Pillow's RGB decoding of it."""
    from PIL import Image
    path = os.path.join(ROOT, "images", "cmyk.jpg")
    synthetic_image((40, 32), "RGB", 7).convert("CMYK").save(path, quality=90)
    Image.open(path).convert("RGB").save(path + ".rgb.png")


def write_classify():
    """torchvision's probabilities for the test images through the tiny_bn network (the
    ImageClassification preset), and an ImageFolder of 300 small images with PyTorch's
    top-1/top-5 on it."""
    from PIL import Image
    from torchvision.transforms._presets import ImageClassification
    from safetensors.torch import load_file
    images = os.path.join(ROOT, "images")
    _, cfg, bn, hidden, pool, classes, _ = FORWARD_CASES[0]
    model = build("custom", num_classes=classes, cfg=cfg, batch_norm=bn, hidden=hidden, pool=pool)
    model.load_state_dict(load_file(os.path.join(ROOT, "forward", "tiny_bn.safetensors")))
    model.eval()
    transform = ImageClassification(crop_size=224)
    probs = {}
    with torch.no_grad():
        for name, _, _ in IMAGES:
            x = transform(Image.open(os.path.join(images, name)).convert("RGB")).unsqueeze(0)
            p = torch.softmax(model(x), 1)[0]
            flipped = torch.softmax(model(torch.flip(x, dims=[3])), 1)[0]
            probs[name] = {"probs": p.tolist(), "flip_probs": ((p + flipped) / 2).tolist()}
    with open(os.path.join(images, "tiny_bn_probs.json"), "w") as f:
        json.dump(probs, f)

    # ImageFolder: 10 classes x 30 images of 36x36, each class a colour/texture family.
    folder = os.path.join(ROOT, "imagefolder")
    rng = np.random.default_rng(7)
    for c in range(10):
        os.makedirs(os.path.join(folder, f"class_{c:02d}"), exist_ok=True)
        for i in range(30):
            base = rng.uniform(0, 255, 3) * 0.3 + np.array([25 * c, 255 - 25 * c, (80 * c) % 255]) * 0.7
            img = np.clip(base + rng.normal(0, 8, (36, 36, 3)), 0, 255).astype(np.uint8)
            Image.fromarray(img).save(os.path.join(folder, f"class_{c:02d}", f"{i:02d}.png"))
    transform = ImageClassification(crop_size=32, resize_size=32)
    dataset = torchvision.datasets.ImageFolder(folder, transform=transform)
    top1 = top5 = 0
    with torch.no_grad():
        for x, y in torch.utils.data.DataLoader(dataset, batch_size=50):
            best = model(x).topk(5, 1).indices
            top1 += (best[:, 0] == y).sum().item()
            top5 += (best == y[:, None]).any(1).sum().item()
    with open(os.path.join(ROOT, "imagefolder_reference.json"), "w") as f:
        json.dump({"images": len(dataset), "top1": 100 * top1 / len(dataset),
                   "top5": 100 * top5 / len(dataset), "resize": 32, "crop": 32}, f)
    print(f"imagefolder: {len(dataset)} images, top-1 {top1}, top-5 {top5}")


def write_train():
    """Gradients of the tiny_pool3 network (batch norm in training mode, dropout 0) for one
    batch, the same gradients clipped by clip_grad_norm_, the loss with label smoothing, and
    its weights after 20 steps of SGD (momentum, Nesterov, weight decay) and of AdamW on that
    batch."""
    from safetensors.torch import load_file
    out = os.path.join(ROOT, "train")
    os.makedirs(out, exist_ok=True)
    _, cfg, bn, hidden, pool, classes, _ = FORWARD_CASES[2]
    weights = load_file(os.path.join(ROOT, "forward", "tiny_pool3.safetensors"))

    def fresh():
        model = build("custom", num_classes=classes, cfg=cfg, batch_norm=bn, hidden=hidden, pool=pool,
                      dropout=0.0)
        model.load_state_dict(weights)
        return model.train()

    gen = torch.Generator().manual_seed(11)
    x = torch.randn((4, 3, 24, 24), generator=gen)
    y = torch.randint(0, classes, (4,), generator=gen)
    model = fresh()
    loss = torch.nn.functional.cross_entropy(model(x), y)
    loss.backward()
    save_file({k: p.grad.contiguous() for k, p in model.named_parameters()}, os.path.join(out, "grads.safetensors"))
    grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), max_norm=0.5).item()
    save_file({k: p.grad.contiguous() for k, p in model.named_parameters()},
              os.path.join(out, "grads_clipped.safetensors"))
    smoothed = torch.nn.functional.cross_entropy(fresh()(x), y, label_smoothing=0.1).item()
    optimisers = {
        "sgd": lambda params: torch.optim.SGD(params, lr=0.01, momentum=0.9, nesterov=True, weight_decay=5e-4),
        "adamw": lambda params: torch.optim.AdamW(params, lr=1e-3, weight_decay=1e-2),
    }
    for name, make in optimisers.items():
        model = fresh()
        optimiser = make(model.parameters())
        for _ in range(20):
            optimiser.zero_grad()
            torch.nn.functional.cross_entropy(model(x), y).backward()
            optimiser.step()
        save_file({k: v.contiguous() for k, v in model.state_dict().items()}, os.path.join(out, f"{name}20.safetensors"))
    np.save(os.path.join(out, "input.npy"), x.numpy())
    np.save(os.path.join(out, "targets.npy"), y.numpy())
    with open(os.path.join(out, "loss.json"), "w") as f:
        json.dump({"loss": loss.item(), "loss_smoothed_0.1": smoothed, "grad_norm": grad_norm,
                   "clip_max_norm": 0.5}, f)


def write_schedules():
    """Learning rates per epoch from torch.optim.lr_scheduler, 30 epochs from lr 0.1, and
    ReduceLROnPlateau (mode max, the paper's "divide by 10 when validation accuracy stops
    improving") on a fixed accuracy sequence."""
    def run(make, epochs=30, metrics=None):
        opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.1)
        sched = make(opt)
        lrs = []
        for e in range(epochs):
            lrs.append(opt.param_groups[0]["lr"])
            opt.step()
            sched.step(metrics[e]) if metrics is not None else sched.step()
        return lrs
    S = torch.optim.lr_scheduler
    accuracy = [0.1, 0.3, 0.5, 0.6, 0.6, 0.6, 0.6, 0.62, 0.62, 0.62, 0.62, 0.62, 0.7, 0.7, 0.7,
                0.7, 0.7, 0.7, 0.7, 0.7, 0.71, 0.71, 0.71, 0.71, 0.71, 0.71, 0.71, 0.71, 0.71, 0.71]
    schedules = {
        "step": run(lambda o: S.StepLR(o, step_size=7, gamma=0.1)),
        "multistep": run(lambda o: S.MultiStepLR(o, milestones=[5, 12, 20], gamma=0.2)),
        "cosine": run(lambda o: S.CosineAnnealingLR(o, T_max=30, eta_min=0.001)),
        "warmup_cosine": run(lambda o: S.SequentialLR(o, [S.LinearLR(o, start_factor=0.1, total_iters=5),
                                                          S.CosineAnnealingLR(o, T_max=25)], milestones=[5])),
        "plateau": run(lambda o: S.ReduceLROnPlateau(o, mode="max", factor=0.1, patience=2), metrics=accuracy),
    }
    with open(os.path.join(ROOT, "schedules.json"), "w") as f:
        json.dump({"accuracy": accuracy, "lr": schedules}, f)


def write_labels():
    """torchvision's ImageNet-1k class names, one per line, index = class id."""
    from torchvision.models._meta import _IMAGENET_CATEGORIES
    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "src", "data", "imagenet_classes.txt")
    with open(path, "w") as f:
        f.write("\n".join(_IMAGENET_CATEGORIES) + "\n")


# Grad-CAM images: the landscape photo (a map with few positive cells) and one with a broad map.
GRADCAM_IMAGES = ["landscape.jpg", "rgba.png"]


def write_gradcam():
    """Grad-CAM (Selvaraju et al.) for the top class of each GRADCAM_IMAGES image through the
    tiny_bn network, the usual PyTorch way: hooks on the last ReLU in `features` capture its output A
    and the gradient G of the class logit; cam = ReLU(sum_k mean(G_k) A_k) / max, then
    bilinear upsampling (align_corners=False) to the input size."""
    from PIL import Image
    from torchvision.transforms._presets import ImageClassification
    from safetensors.torch import load_file
    import torch.nn.functional as F
    name, cfg, bn, hidden, pool, classes, _ = FORWARD_CASES[0]
    model = build("custom", num_classes=classes, cfg=cfg, batch_norm=bn, hidden=hidden, pool=pool)
    model.load_state_dict(load_file(os.path.join(ROOT, "forward", f"{name}.safetensors")))
    model.eval()
    last = max(i for i, m in enumerate(model.features) if isinstance(m, nn.ReLU))
    model.features[last].inplace = False  # keep A intact (the next module reads it, not overwrites)
    saved = {}

    def keep(module, inputs, output):
        saved["A"] = output.detach().clone()
        output.register_hook(lambda grad: saved.__setitem__("G", grad.detach().clone()))

    model.features[last].register_forward_hook(keep)
    out = os.path.join(ROOT, "gradcam")
    os.makedirs(out, exist_ok=True)
    cases = []
    for image in GRADCAM_IMAGES:
        x = ImageClassification(crop_size=224)(Image.open(os.path.join(ROOT, "images", image)).convert("RGB"))
        model.zero_grad()
        logits = model(x.unsqueeze(0))[0]
        top = int(logits.argmax())
        logits[top].backward()
        a, g = saved["A"][0], saved["G"][0]
        cam = torch.relu((g.mean(dim=(1, 2))[:, None, None] * a).sum(0))
        if cam.max() > 0:
            cam = cam / cam.max()
        upsampled = F.interpolate(cam[None, None], size=tuple(x.shape[1:]), mode="bilinear",
                                  align_corners=False)[0, 0]
        stem = image.split(".")[0]
        np.save(os.path.join(out, f"{stem}_cam.npy"), cam.numpy())
        np.save(os.path.join(out, f"{stem}_cam_upsampled.npy"), upsampled.numpy())
        cases.append({"image": f"images/{image}", "class": top, "cam": f"gradcam/{stem}_cam.npy",
                      "upsampled": f"gradcam/{stem}_cam_upsampled.npy"})
        print(f"gradcam {image}: class {top}, map {tuple(cam.shape)}, {int((cam > 0).sum())} cells > 0")
    with open(os.path.join(out, "gradcam.json"), "w") as f:
        json.dump({"network": f"forward/{name}.safetensors", "layer": f"features.{last}",
                   "cases": cases}, f, indent=1)


if __name__ == "__main__":
    torch.set_num_threads(2)
    print(f"torch {torch.__version__} torchvision {torchvision.__version__} "
          f"torchinfo {torchinfo.__version__}", file=sys.stderr)
    parts = {"summaries": write_summaries, "keys": write_state_dict_keys, "forward": write_forward,
             "images": write_images, "cmyk": write_cmyk, "labels": write_labels, "classify": write_classify,
             "gradcam": write_gradcam, "train": write_train, "schedules": write_schedules}
    for part in sys.argv[1:] or parts:  # e.g. `make_fixtures.py forward` regenerates just those
        parts[part]()
