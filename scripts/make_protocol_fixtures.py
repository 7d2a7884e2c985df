#!/usr/bin/env python3
"""PyTorch reference for the evaluation protocols of Simonyan & Zisserman (VGG paper, §3.2):
dense (fully-convolutional) evaluation, multi-crop evaluation and their combination, over
several test scales, plus the ordinary single-crop torchvision evaluation.

Pinned versions: those of make_fixtures.py (torch==2.15.0 torchvision==0.29.2 safetensors numpy).

    ../torchenv/bin/python scripts/make_protocol_fixtures.py        # protocols

Reads tests/fixtures/forward/{tiny,tiny_bn}.safetensors and three test images; writes under
tests/fixtures/protocols/:
  reference.json               per network and image, the class posteriors of each protocol
                               ("center", "dense", "multi-crop", "dense+multi-crop"), the dense
                               score-map shape and the resized image size at every scale, and
                               one raw dense score map (landscape.jpg at Q=256)

The networks' last layer (weight and bias) is multiplied by SHARPEN first: random weights give
near-uniform posteriors, where averaging before or after the softmax would barely differ.

The protocols, as implemented here (our spec):
  x_Q        resize the shorter side to Q (bilinear, antialias), to_tensor, ImageNet normalize
  dense(Q)   the dense net's score map on x_Q, averaged over space, softmaxed; the same for the
             horizontally flipped x_Q; their mean. "dense" = mean over scales.
  crops(Q)   a 5x5 grid of S x S crops of x_Q (top_i = i*(H-S)//4, left_j = j*(W-S)//4) and
             their flips through the original model; mean of the 50 softmaxes. "multi-crop" =
             mean over scales. "dense+multi-crop" = (dense + multi-crop) / 2.
  center     resize 256, center_crop 224, to_tensor, normalize, model, softmax.
"""
import json
import os
import sys

import numpy as np
import torch
import torch.nn as nn
import torchvision.transforms.functional as F
from PIL import Image
from safetensors.torch import load_file

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from make_fixtures import ROOT, build, dense_form  # noqa: E402

OUT = os.path.join(ROOT, "protocols")
SCALES = [224, 256, 320]  # 224: one side of x_Q is exactly the crop size
IMAGES = ["landscape.jpg", "portrait.jpg", "wide.bmp"]
MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
SHARPEN = 15.0


def load_net(name):
    """A committed forward-fixture network (tiny / tiny_bn), last layer sharpened, in eval mode."""
    meta = json.load(open(os.path.join(ROOT, "forward", f"{name}.json")))
    model = build("custom", num_classes=meta["num_classes"], cfg=meta["cfg"],
                  batch_norm=meta["batch_norm"], hidden=meta["hidden"], pool=meta["pool"], dropout=0.0)
    model.load_state_dict(load_file(os.path.join(ROOT, "forward", f"{name}.safetensors")), strict=True)
    for p in model.classifier[6].parameters():
        p.data *= SHARPEN
    return model.eval()


def crop_size(model):
    """S = pool * 2**(max-pools): the input size at which features give exactly pool x pool."""
    pools = sum(isinstance(m, nn.MaxPool2d) for m in model.features)
    return model.avgpool.output_size[0] * 2 ** pools


def preprocess(img, q):
    """x_Q: shorter side to Q (torchvision's rounding of the longer side), [3, H, W] normalized."""
    resized = F.resize(img, q, interpolation=F.InterpolationMode.BILINEAR, antialias=True)
    return F.normalize(F.to_tensor(resized), MEAN, STD)


def dense_posterior(dense, x):
    """Spatially averaged, softmaxed score map of x and of its flip, averaged; and the map shape."""
    s = dense(x[None])
    s_flip = dense(torch.flip(x, dims=[-1])[None])
    p = torch.softmax(s.mean(dim=(2, 3)), 1)[0] + torch.softmax(s_flip.mean(dim=(2, 3)), 1)[0]
    return p / 2, list(s.shape[2:])


def multi_crop_posterior(model, x, size):
    """Mean softmax over a 5x5 grid of crops and their horizontal flips (50 views)."""
    _, h, w = x.shape
    tops = [(i * (h - size)) // 4 for i in range(5)]
    lefts = [(j * (w - size)) // 4 for j in range(5)]
    batch = torch.stack([x[:, t:t + size, l:l + size] for t in tops for l in lefts])
    batch = torch.cat([batch, torch.flip(batch, dims=[-1])])
    return torch.softmax(model(batch), 1).mean(0)


def center_posterior(model, img):
    """torchvision's ordinary eval: resize 256, center crop 224, one view."""
    x = F.center_crop(F.resize(img, 256, interpolation=F.InterpolationMode.BILINEAR, antialias=True), 224)
    return torch.softmax(model(F.normalize(F.to_tensor(x), MEAN, STD)[None]), 1)[0]


def check_dense_equals_model(model, dense, size):
    """At exactly S x S the score map is 1x1 and equals the ordinary model's logits."""
    x = torch.randn(2, 3, size, size, generator=torch.Generator().manual_seed(3))
    s = dense(x)
    assert s.shape[2:] == (1, 1), s.shape
    diff = (s[:, :, 0, 0] - model(x)).abs().max().item()
    print(f"  dense vs model at {size}x{size}: max abs diff {diff:.2e}")
    assert diff < 1e-5, diff


def evaluate(name, images):
    """Every protocol's posteriors for each image through one network."""
    model = load_net(name)
    dense, size = dense_form(model), crop_size(model)
    check_dense_equals_model(model, dense, size)
    result = {"center": [], "dense": [], "multi-crop": [], "dense+multi-crop": [],
              "dense_score_map_shapes": {}}
    for image, img in images.items():
        dense_p, crops_p, shapes = 0, 0, {}
        for q in SCALES:
            x = preprocess(img, q)
            p, shapes[str(q)] = dense_posterior(dense, x)
            dense_p = dense_p + p / len(SCALES)
            crops_p = crops_p + multi_crop_posterior(model, x, size) / len(SCALES)
        result["dense_score_map_shapes"][image] = shapes
        for key, p in (("center", center_posterior(model, img)), ("dense", dense_p),
                       ("multi-crop", crops_p), ("dense+multi-crop", (dense_p + crops_p) / 2)):
            result[key].append(p.double().tolist())
        top = {k: int(np.argmax(v[-1])) for k, v in result.items() if k != "dense_score_map_shapes"}
        print(f"  {image}: score maps {shapes}, top-1 {top}")
    return result


def dense_scores(name, img, q):
    """A direct check of the dense forward: the raw score map of one image at one scale."""
    s = dense_form(load_net(name))(preprocess(img, q)[None])
    return {"shape": list(s.shape), "values": s.flatten().double().tolist()}


def main():
    os.makedirs(OUT, exist_ok=True)
    images = {n: Image.open(os.path.join(ROOT, "images", n)).convert("RGB") for n in IMAGES}
    resized = {n: {str(q): list(preprocess(img, q).shape[1:]) for q in SCALES} for n, img in images.items()}
    for n, sizes in resized.items():
        print(f"{n} {images[n].size[0]}x{images[n].size[1]} (WxH) -> x_Q [H, W] {sizes}")
    ref = {"scales": SCALES, "crop": crop_size(load_net("tiny")), "images": IMAGES, "resized": resized,
           "sharpen": SHARPEN, "models": {},
           "score_map": {"model": "tiny_bn", "image": "landscape.jpg", "scale": 256,
                         **dense_scores("tiny_bn", images["landscape.jpg"], 256)}}
    for name in ("tiny", "tiny_bn"):
        print(name)
        assert crop_size(load_net(name)) == ref["crop"]
        ref["models"][name] = evaluate(name, images)
    with open(os.path.join(OUT, "reference.json"), "w") as f:
        json.dump(ref, f)


if __name__ == "__main__":
    torch.set_num_threads(2)
    with torch.no_grad():
        main()
