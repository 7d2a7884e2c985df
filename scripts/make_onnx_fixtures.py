#!/usr/bin/env python3
"""ONNX import fixtures: small VGG-shaped graphs as PyTorch's exporters, the ONNX Model Zoo
(MXNet-converted vgg16-7 / vgg16-bn-7) and tf2onnx (Keras) write them, plus a few graphs that are
not VGG-shaped, each with an input and onnxruntime's output.

Pinned versions (the ones the fixtures were made with; `../torchenv/bin/pip list`):
    torch==2.15.0 torchvision==0.29.2 onnx==1.23.2 onnxruntime==1.32.0 onnxscript==0.7.2
    onnx-ir==1.1.0 numpy==2.4.6 (and make_fixtures.py's: torchsummary torchinfo safetensors)

    ../torchenv/bin/pip install onnx==1.23.2 onnxruntime==1.32.0 onnxscript==0.7.2
    ../torchenv/bin/python scripts/make_onnx_fixtures.py [torch] [zoo] [keras] [invalid]

(no arguments: all four, and manifest.json lists what is on disk). Idempotent: a rerun with
these versions writes the same bytes (checked; the exporters, onnx.helper and onnxruntime on
CPU are deterministic here).

Writes under tests/fixtures/onnx/, for every fixture NAME:
  NAME.onnx          the graph (every one passes onnx.checker.check_model(full_check=True))
  NAME.input.npy     float32 ~N(0,1), in the graph's own layout (NCHW; NHWC for the Keras
                     style); batch 2 where the batch dimension is symbolic, else 1
  NAME.output.npy    onnxruntime's output on it (CPUExecutionProvider), float32
  manifest.json      one object per fixture: name, style (torch|zoo|keras|invalid), opset,
                     exporter (torchscript|dynamo|helper), ops (op_type per node, in node
                     order), input_layout, input_shape, input_name, output_name, output_shape,
                     dynamic_batch, dropout_in_graph, notes, and `expected`: what the importer
                     should make of it in our terms: cfg, batch_norm, pool, head (our --head
                     text), num_params (conv/linear weight+bias and BN weight+bias, no running
                     stats), outputs_probabilities. Invalid graphs carry first_bad_node
                     {name, op_type} instead.

Styles:
  torch    torchvision.models.VGG built by make_fixtures.build (make_layers + AdaptiveAvgPool2d(P)
           + a torchvision-shaped classifier of width 16, or a --head list), every parameter and
           BN running stat randomised from a fixed seed, eval mode, exported by the legacy
           TorchScript exporter (dynamo=False; opsets 11, 13, 17) and the dynamo exporter
           (dynamo=True, opset 18: works offline). PyTorch's own output is checked against
           onnxruntime's (max abs diff <= 1e-5). Dropout is never in these graphs (eval mode);
           `expected.head` is still the model's head.
           What the exporters do (torch 2.15): the legacy exporter in its default
           training=EVAL mode folds BatchNorm2d into the preceding Conv (initializers renamed
           onnx::Conv_N), so those graphs have no BatchNormalization and `expected` describes
           the plain network they are (`bn_folded_by_exporter: true`); training=PRESERVE on an
           eval-mode model keeps BatchNormalization with state_dict names. The dynamo exporter's
           default optimizer also folds BN into Conv but keeps the *original* initializer names
           (features.0.weight, features.4.weight: indices of the BN model, folded values).
           AdaptiveAvgPool2d(P) comes out as AveragePool (kernel = stride = map/P; P = map side:
           a 1x1 AveragePool) or, for P=1, GlobalAveragePool. torch.flatten -> Flatten(axis 1)
           (legacy) or Reshape with a constant [-1, C*P*P] (dynamo); x.view(x.size(0), -1) /
           x.reshape(x.shape[0], -1) with a symbolic batch -> Shape, Gather, Unsqueeze, Concat,
           Reshape (with Constant nodes). Linear -> Gemm(transB=1) always; no MatMul+Add seen.
  zoo      onnx.helper, like the Model Zoo's vgg16-7 / vgg16-bn-7 (MXNet export): MXNet names
           (vgg0_conv0_weight, vgg0_conv0_fwd, ...), input `data` [1,3,32,32], Conv pads
           [1,1,1,1], MaxPool 2x2/2, no avgpool (the first Gemm takes C*h*w), Gemm transB=1,
           Dropout. opset 7 (IR 3): initializers also listed as graph inputs, as in the zoo
           files; a Flatten before *every* Gemm (flatten_60, flatten_65, flatten_70, as in
           vgg16-7; no-ops on 2-D), Dropout `ratio` attribute. opset 12 (IR 7): BatchNormalization
           with epsilon 1e-3 (not PyTorch's 1e-5), one Flatten, Dropout ratio as an initializer
           input and its optional mask output present but unused.
  keras    onnx.helper, like tf2onnx (opset 13) on a Keras model: input `input_1`
           [unk__0,32,32,3] NHWC, Transpose [0,3,1,2], Conv+Relu, MaxPool (valid: no pads),
           Transpose [0,2,3,1] back to NHWC, tf2onnx's flatten plumbing (Shape, Cast int32,
           Slice or Gather+Unsqueeze of the batch dim, Concat with [-1], Cast int64, Reshape),
           so the first dense layer's rows are in HWC order; Dense as MatMul [in,out] + Add,
           head BatchNormalization as Mul [F] + Add [F] (Keras epsilon 1e-3 folded in), Softmax.
           Variant b's convs use auto_pad SAME_UPPER (what tf2onnx writes when H, W are unknown)
           instead of explicit pads. The semantics are Keras's: onnxruntime's output is checked
           against a numpy NHWC forward of the same Keras-layout weights (HWIO kernels).
  invalid  onnx.helper, opset 13: graphs an importer must refuse, with the first node (in node
           order) that does not fit.

For every zoo and keras fixture the `expected` description is checked too: the network it names
is built with make_fixtures.build, loaded with the graph's weights converted to our layout (the
HWC->CHW row permutation of the first Keras dense layer, BN epsilon moved into running_var, the
Mul/Add BN as weight=scale, bias=shift, mean 0, var 1-1e-5) and must reproduce onnxruntime's
output (max abs diff <= 1e-5); its parameter count is `num_params`.
"""
import io
import json
import os
import sys
import warnings

import numpy as np
import onnx
import onnxruntime as ort
import torch
import torch.nn as nn
import torchvision
from onnx import TensorProto, helper, numpy_helper

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from make_fixtures import ROOT, build  # noqa: E402

OUT = os.path.join(ROOT, "onnx")
SIZE = 32
TORCH_CFG = "8,M,16,M"  # 32x32 -> 16x8x8
HIDDEN, CLASSES = 16, 5


def tv_head(hidden, classes, dropout=0.5):
    return f"{hidden},relu,dropout={dropout},{hidden},relu,dropout={dropout},{classes}"


def map_side(cfg, size=SIZE):
    return size >> cfg.split(",").count("M")


# ---------------------------------------------------------------------------------------------
# common


def ops_of(model):
    return [n.op_type for n in model.graph.node]


def run_ort(data, x):
    so = ort.SessionOptions()
    so.intra_op_num_threads, so.inter_op_num_threads = 2, 1
    sess = ort.InferenceSession(data, so, providers=["CPUExecutionProvider"])
    (inp,), out = sess.get_inputs(), sess.get_outputs()[0]
    return sess.run([out.name], {inp.name: x})[0].astype(np.float32)


def dims_of(value_info):
    return [d.dim_value if d.HasField("dim_value") else d.dim_param
            for d in value_info.type.tensor_type.shape.dim]


def write(name, data, x, entry, manifest):
    """Check and save one fixture: NAME.onnx, its input and onnxruntime's output."""
    model = onnx.load_from_string(data)
    onnx.checker.check_model(model, full_check=True)
    y = run_ort(data, x)
    with open(os.path.join(OUT, f"{name}.onnx"), "wb") as f:
        f.write(data)
    np.save(os.path.join(OUT, f"{name}.input.npy"), x)
    np.save(os.path.join(OUT, f"{name}.output.npy"), y)
    graph_inputs = {i.name for i in model.graph.initializer}
    (data_input,) = [i for i in model.graph.input if i.name not in graph_inputs]
    record = {"name": name, "style": entry.pop("style"), "opset": model.opset_import[0].version,
              "exporter": entry.pop("exporter"), "ops": ops_of(model),
              "input_layout": entry.pop("input_layout", "NCHW"), "input_shape": list(x.shape),
              "input_name": data_input.name, "output_name": model.graph.output[0].name,
              "output_shape": list(y.shape),
              "dynamic_batch": isinstance(dims_of(data_input)[0], str)}
    record.update(entry)
    manifest.append(record)
    print(f"{name}: {' '.join(record['ops'])}", file=sys.stderr)
    return y


def inputs(seed, shape):
    return np.random.default_rng(seed).standard_normal(shape).astype(np.float32)


def max_diff(a, b):
    return float(np.max(np.abs(np.asarray(a, np.float64) - np.asarray(b, np.float64))))


def num_params(model):
    return sum(p.numel() for p in model.parameters())


# ---------------------------------------------------------------------------------------------
# torch exports


class ViewVGG(torchvision.models.VGG):
    """torchvision's VGG flattening the old way, x.view(x.size(0), -1)."""

    def forward(self, x):
        x = self.avgpool(self.features(x))
        return self.classifier(x.view(x.size(0), -1))


class ReshapeVGG(torchvision.models.VGG):
    """torchvision's VGG flattening with x.reshape(x.shape[0], -1)."""

    def forward(self, x):
        x = self.avgpool(self.features(x))
        return self.classifier(x.reshape(x.shape[0], -1))


def randomise(model, seed):
    """He-scaled conv/linear weights, biases N(0, 0.1); BN weight U(0.5, 1.5), bias N(0, 0.1),
    running_mean N(0, 0.1), running_var U(0.5, 1.5). Returns the model in eval mode."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                m.weight.copy_(torch.randn(m.weight.shape, generator=gen)
                               * (2.0 / m.weight[0].numel()) ** 0.5)
                m.bias.copy_(torch.randn(m.bias.shape, generator=gen) * 0.1)
            elif isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)):
                m.weight.copy_(torch.rand(m.weight.shape, generator=gen) + 0.5)
                m.bias.copy_(torch.randn(m.bias.shape, generator=gen) * 0.1)
                m.running_mean.copy_(torch.randn(m.running_mean.shape, generator=gen) * 0.1)
                m.running_var.copy_(torch.rand(m.running_var.shape, generator=gen) + 0.5)
    return model.eval()


# name, opset, exporter, batch_norm, pool, flatten, dynamic batch, BN mode, head, names, seed
TORCH_CASES = [
    ("torch_op11_p2", 11, "torchscript", False, 2, "flatten", False, "eval", None, False, 1),
    ("torch_op11_bn_p1_dyn", 11, "torchscript", True, 1, "flatten", True, "preserve", None, True, 2),
    ("torch_op13_view_p2_dyn", 13, "torchscript", False, 2, "view", True, "eval", None, True, 3),
    ("torch_op13_bn_folded_p2", 13, "torchscript", True, 2, "flatten", False, "eval", None, True, 4),
    ("torch_op13_head_bn_softmax", 13, "torchscript", False, 1, "flatten", True, "preserve",
     "16,relu,bn,8,relu,dropout=0.25,5,softmax", True, 5),
    ("torch_op17_p8_dyn", 17, "torchscript", False, 8, "flatten", True, "eval", None, True, 6),
    ("torch_op17_bn_reshape_p2_dyn", 17, "torchscript", True, 2, "reshape", True, "preserve",
     None, True, 7),
    ("torch_dynamo_op18_p2_dyn", 18, "dynamo", False, 2, "flatten", True, "eval", None, True, 8),
    ("torch_dynamo_op18_bn_p2", 18, "dynamo", True, 2, "flatten", False, "eval", None, True, 9),
]


def write_torch(manifest):
    warnings.filterwarnings("ignore", category=DeprecationWarning)
    for (name, opset, exporter, bn, pool, flatten, dynamic, bn_mode, head, names,
         seed) in TORCH_CASES:
        head = head or tv_head(HIDDEN, CLASSES)
        model = randomise(build("custom", cfg=TORCH_CFG, batch_norm=bn, pool=pool, head=head), seed)
        model.__class__ = {"flatten": torchvision.models.VGG, "view": ViewVGG,
                           "reshape": ReshapeVGG}[flatten]
        x = inputs(100 + seed, (2 if dynamic else 1, 3, SIZE, SIZE))
        with torch.no_grad():
            expected_out = model(torch.from_numpy(x)).numpy()
        io_names = dict(input_names=["input"], output_names=["output"]) if names else {}
        if exporter == "torchscript":
            buf = io.BytesIO()
            torch.onnx.export(
                model, (torch.from_numpy(x),), buf, opset_version=opset, dynamo=False,
                training=(torch.onnx.TrainingMode.PRESERVE if bn_mode == "preserve"
                          else torch.onnx.TrainingMode.EVAL),
                dynamic_axes={"input": {0: "batch"}, "output": {0: "batch"}} if dynamic else None,
                **io_names)
            data = buf.getvalue()
        else:
            program = torch.onnx.export(
                model, (torch.from_numpy(x),), dynamo=True, opset_version=opset, verbose=False,
                dynamic_shapes=({0: torch.export.Dim("batch")},) if dynamic else None, **io_names)
            data = program.model_proto.SerializeToString()
        graph_ops = ops_of(onnx.load_from_string(data))
        folded = bn and "BatchNormalization" not in graph_ops
        # what the graph is, in our terms: a folded-BN graph is the plain network
        equivalent = build("custom", cfg=TORCH_CFG, batch_norm=bn and not folded, pool=pool,
                           head=head)
        notes = {
            "flatten": {"flatten": "torch.flatten(x, 1)", "view": "x.view(x.size(0), -1)",
                        "reshape": "x.reshape(x.shape[0], -1)"}[flatten],
            "training_mode": bn_mode if exporter == "torchscript" else "n/a",
        }
        entry = {"style": "torch", "exporter": exporter, "dropout_in_graph": False,
                 "bn_folded_by_exporter": bool(folded), "source_batch_norm": bn,
                 "notes": notes,
                 "expected": {"cfg": TORCH_CFG, "batch_norm": bn and not folded, "pool": pool,
                              "head": head, "num_params": num_params(equivalent),
                              "outputs_probabilities": head.endswith("softmax")}}
        if folded and exporter == "dynamo":
            notes["initializers"] = ("BN folded into Conv by the onnxscript optimizer; the conv "
                                     "initializers keep the BN model's names (features.0, "
                                     "features.4) but hold folded values")
        elif folded:
            notes["initializers"] = "BN folded into Conv by the exporter; conv initializers " \
                                    "renamed onnx::Conv_N"
        y = write(name, data, x, entry, manifest)
        diff = max_diff(y, expected_out)
        assert diff <= 1e-5, f"{name}: torch vs onnxruntime differ by {diff}"


# ---------------------------------------------------------------------------------------------
# onnx.helper graphs


class Graph:
    """A graph under construction: nodes and initializers in insertion order."""

    def __init__(self):
        self.nodes, self.inits = [], []

    def const(self, name, array):
        self.inits.append(numpy_helper.from_array(np.asarray(array), name))
        return name

    def node(self, op, inputs, name, outputs=None, **attrs):
        outputs = outputs or [name]
        self.nodes.append(helper.make_node(op, inputs, outputs, name=name, **attrs))
        return outputs[0]

    def model(self, inp, out, opset, ir_version, inits_as_inputs=False, doc=""):
        graph_inputs = [inp]
        if inits_as_inputs:  # IR 3 style: every initializer is also a graph input
            graph_inputs += [helper.make_tensor_value_info(t.name, t.data_type, list(t.dims))
                             for t in self.inits]
        graph = helper.make_graph(self.nodes, "graph", graph_inputs, [out], self.inits)
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)],
                                  producer_name="make_onnx_fixtures.py", doc_string=doc)
        model.ir_version = ir_version
        return model.SerializeToString()


def he(rng, shape, fan_in):
    return (rng.standard_normal(shape) * (2.0 / fan_in) ** 0.5).astype(np.float32)


def small(rng, shape, scale=0.1):
    return (rng.standard_normal(shape) * scale).astype(np.float32)


def bn_stats(rng, n):
    """gamma U(0.5,1.5), beta N(0,0.1), mean N(0,0.1), var U(0.5,1.5)."""
    return [(rng.random(n) + 0.5).astype(np.float32), small(rng, n), small(rng, n),
            (rng.random(n) + 0.5).astype(np.float32)]


def load_ours(cfg, batch_norm, pool, head, convs, denses):
    """Our network for a cfg/head, loaded with PyTorch-layout weights: convs = [(w, b, bn|None)],
    denses = one entry per Linear (w [out,in], b) or BatchNorm1d ([weight, bias, mean, var])
    head item, in order. Returns the eval-mode model."""
    model = build("custom", cfg=cfg, batch_norm=batch_norm, pool=pool, head=head).eval()
    state = model.state_dict()
    f_convs = [i for i, m in enumerate(model.features) if isinstance(m, nn.Conv2d)]
    for i, (w, b, bn) in zip(f_convs, convs, strict=True):
        state[f"features.{i}.weight"], state[f"features.{i}.bias"] = map(torch.from_numpy, (w, b))
        if bn is not None:
            for key, v in zip(["weight", "bias", "running_mean", "running_var"], bn):
                state[f"features.{i + 1}.{key}"] = torch.from_numpy(np.asarray(v, np.float32))
    c_items = [i for i, m in enumerate(model.classifier)
               if isinstance(m, (nn.Linear, nn.BatchNorm1d))]
    for i, params in zip(c_items, denses, strict=True):
        keys = ["weight", "bias"] if len(params) == 2 else ["weight", "bias", "running_mean",
                                                             "running_var"]
        for key, v in zip(keys, params):
            state[f"classifier.{i}.{key}"] = torch.from_numpy(np.ascontiguousarray(v, np.float32))
    model.load_state_dict(state, strict=True)
    return model


def check_ours(name, model, x_nchw, y):
    with torch.no_grad():
        ours = model(torch.from_numpy(np.ascontiguousarray(x_nchw))).numpy()
    diff = max_diff(ours, y)
    assert diff <= 1e-5, f"{name}: expected network vs onnxruntime differ by {diff}"


# zoo --------------------------------------------------------------------------------------------

def zoo_graph(opset, cfg, batch_norm, hidden, classes, dropout, seed):
    rng = np.random.default_rng(seed)
    g, x, cin = Graph(), "data", 3
    conv_i = relu_i = pool_i = bn_i = 0
    convs = []
    for v in cfg.split(","):
        if v == "M":
            x = g.node("MaxPool", [x], f"vgg0_pool{pool_i}_fwd", kernel_shape=[2, 2],
                       strides=[2, 2], pads=[0, 0, 0, 0])
            pool_i += 1
            continue
        cout = int(v)
        w, b = he(rng, (cout, cin, 3, 3), cin * 9), small(rng, cout)
        p = f"vgg0_conv{conv_i}"
        x = g.node("Conv", [x, g.const(f"{p}_weight", w), g.const(f"{p}_bias", b)], f"{p}_fwd",
                   kernel_shape=[3, 3], pads=[1, 1, 1, 1], strides=[1, 1], dilations=[1, 1],
                   group=1)
        bn = None
        if batch_norm:
            bn = bn_stats(rng, cout)
            p = f"vgg0_batchnorm{bn_i}"
            names = [g.const(f"{p}_{k}", v) for k, v in
                     zip(["gamma", "beta", "running_mean", "running_var"], bn)]
            x = g.node("BatchNormalization", [x] + names, f"{p}_fwd", epsilon=1e-3,
                       momentum=0.9)
            # our BN has eps 1e-5: the same function with var + (1e-3 - 1e-5)
            bn = bn[:3] + [bn[3].astype(np.float64) + 1e-3 - 1e-5]
            bn_i += 1
        x = g.node("Relu", [x], f"vgg0_relu{relu_i}_fwd")
        relu_i += 1
        convs.append((w, b, bn))
        conv_i, cin = conv_i + 1, cout
    side = map_side(cfg)
    width, denses, flat_i = cin * side * side, [], 60
    for d, out in enumerate([hidden, hidden, classes]):
        if d == 0 or opset < 12:  # vgg16-7 flattens before every dense layer
            x = g.node("Flatten", [x], f"flatten_{flat_i}", axis=1)
            flat_i += 5
        w, b = he(rng, (out, width), width), small(rng, out)
        p = f"vgg0_dense{d}"
        x = g.node("Gemm", [x, g.const(f"{p}_weight", w), g.const(f"{p}_bias", b)], f"{p}_fwd",
                   alpha=1.0, beta=1.0, transA=0, transB=1)
        denses.append((w, b))
        width = out
        if d < 2:
            x = g.node("Relu", [x], f"{p}_relu_fwd")
            if opset < 12:
                x = g.node("Dropout", [x], f"vgg0_dropout{d}_fwd", ratio=dropout)
            else:
                ratio = g.const(f"vgg0_dropout{d}_ratio", np.array(dropout, np.float32))
                x = g.node("Dropout", [x, ratio], f"vgg0_dropout{d}_fwd",
                           outputs=[f"vgg0_dropout{d}_fwd", f"vgg0_dropout{d}_mask"])
    inp = helper.make_tensor_value_info("data", TensorProto.FLOAT, [1, 3, SIZE, SIZE])
    out = helper.make_tensor_value_info(x, TensorProto.FLOAT, [1, classes])
    data = g.model(inp, out, opset, ir_version=3 if opset < 12 else 7,
                   inits_as_inputs=opset < 12, doc="ONNX Model Zoo (MXNet export) style")
    return data, convs, denses, side


ZOO_CASES = [  # name, opset, cfg, batch_norm, hidden, classes, dropout, seed
    ("zoo_vgg_op7", 7, "8,M,16,M,16,M", False, 16, 10, 0.5, 21),
    ("zoo_vgg_bn_op12", 12, "8,8,M,16,M", True, 16, 10, 0.25, 22),
]


def write_zoo(manifest):
    for name, opset, cfg, bn, hidden, classes, dropout, seed in ZOO_CASES:
        data, convs, denses, side = zoo_graph(opset, cfg, bn, hidden, classes, dropout, seed)
        head = tv_head(hidden, classes, dropout)
        ours = load_ours(cfg, bn, side, head, convs, denses)
        x = inputs(200 + seed, (1, 3, SIZE, SIZE))
        notes = {"initializers_as_inputs": opset < 12,
                 "flatten": "Flatten before every Gemm (vgg16-7)" if opset < 12
                 else "one Flatten",
                 "dropout": "ratio attribute" if opset < 12
                 else "ratio initializer input; mask output unused"}
        if bn:
            notes["bn_epsilon"] = 1e-3
        entry = {"style": "zoo", "exporter": "helper", "dropout_in_graph": True, "notes": notes,
                 "expected": {"cfg": cfg, "batch_norm": bn, "pool": side, "head": head,
                              "num_params": num_params(ours), "outputs_probabilities": False}}
        y = write(name, data, x, entry, manifest)
        check_ours(name, ours, x, y)


# keras ------------------------------------------------------------------------------------------

def keras_reference(x, convs, head):
    """Keras's forward in NHWC, float64: convs [(kernel HWIO, bias)] per cfg entry (None for a
    pool); head items ('dense', k [in,out], b, act) / ('bn', gamma, beta, mean, var)."""
    x = x.astype(np.float64)
    for c in convs:
        if c is None:
            n, h, w, ch = x.shape
            x = x.reshape(n, h // 2, 2, w // 2, 2, ch).max(axis=(2, 4))
            continue
        k, b = c
        n, h, w, _ = x.shape
        xp = np.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)))
        x = sum(xp[:, dy:dy + h, dx:dx + w, :] @ k[dy, dx] for dy in range(3) for dx in range(3))
        x = np.maximum(x + b, 0.0)
    x = x.reshape(x.shape[0], -1)  # Flatten: H, W, C order
    for item in head:
        if item[0] == "dense":
            _, k, b, act = item
            x = x @ k + b
            if act == "relu":
                x = np.maximum(x, 0.0)
            elif act == "softmax":
                e = np.exp(x - x.max(axis=1, keepdims=True))
                x = e / e.sum(axis=1, keepdims=True)
        else:
            _, gamma, beta, mean, var = item
            x = gamma * (x - mean) / np.sqrt(var + 1e-3) + beta
    return x


def keras_graph(cfg, head_spec, flatten, auto_pad, softmax_axis, seed):
    """A tf2onnx-style graph of a Keras model and everything needed to check it: returns the
    bytes, Keras-layout weights (for keras_reference), our PyTorch-layout weights (for
    load_ours) and the map side."""
    rng = np.random.default_rng(seed)
    g, scope = Graph(), "StatefulPartitionedCall/model"
    x = g.node("Transpose", ["input_1"], f"{scope}/block1_conv1/BiasAdd__6", perm=[0, 3, 1, 2],
               outputs=[f"{scope}/block1_conv1/BiasAdd__6:0"])
    cin, block, conv_in_block = 3, 1, 0
    k_convs, o_convs = [], []
    for v in cfg.split(","):
        if v == "M":
            layer = f"{scope}/block{block}_pool/MaxPool"
            x = g.node("MaxPool", [x], layer, outputs=[f"{layer}:0"], kernel_shape=[2, 2],
                       strides=[2, 2])
            k_convs.append(None)
            block, conv_in_block = block + 1, 0
            continue
        cout = int(v)
        conv_in_block += 1
        kernel, b = he(rng, (3, 3, cin, cout), cin * 9), small(rng, cout)  # Keras HWIO
        w = np.ascontiguousarray(kernel.transpose(3, 2, 0, 1))  # ONNX OIHW
        layer = f"{scope}/block{block}_conv{conv_in_block}"
        pads = dict(auto_pad="SAME_UPPER") if auto_pad else dict(pads=[1, 1, 1, 1])
        x = g.node("Conv", [x, g.const(f"{layer}/Conv2D/ReadVariableOp:0", w),
                            g.const(f"{layer}/BiasAdd/ReadVariableOp:0", b)],
                   f"{layer}/BiasAdd", outputs=[f"{layer}/BiasAdd:0"], kernel_shape=[3, 3],
                   strides=[1, 1], dilations=[1, 1], group=1, **pads)
        x = g.node("Relu", [x], f"{layer}/Relu", outputs=[f"{layer}/Relu:0"])
        k_convs.append((kernel, b))
        o_convs.append((w, b, None))
        cin = cout
    x = g.node("Transpose", [x], f"{scope}/block{block - 1}_pool/MaxPool__28",
               outputs=[f"{scope}/block{block - 1}_pool/MaxPool__28:0"], perm=[0, 2, 3, 1])
    # tf2onnx's flatten: [batch, -1] from the tensor's own shape
    f = f"{scope}/flatten/Reshape"
    shape = g.node("Shape", [x], f"{f}__30", outputs=[f"{f}__30:0"])
    shape = g.node("Cast", [shape], f"{f}__31", outputs=[f"{f}__31:0"], to=TensorProto.INT32)
    if flatten == "slice":
        batch = g.node("Slice", [shape, g.const("const_starts__32", np.array([0], np.int64)),
                                 g.const("const_ends__33", np.array([1], np.int64)),
                                 g.const("const_axes__34", np.array([0], np.int64))],
                       f"{f}__35", outputs=[f"{f}__35:0"])
    else:
        batch = g.node("Gather", [shape, g.const("const_fold_opt__36", np.array(0, np.int64))],
                       f"{scope}/flatten/strided_slice", outputs=[f"{scope}/flatten/strided_slice:0"],
                       axis=0)
        batch = g.node("Unsqueeze", [batch, g.const("const_axes__37", np.array([0], np.int64))],
                       f"{f}/shape_Unsqueeze__38", outputs=[f"{f}/shape_Unsqueeze__38:0"])
    target = g.node("Concat", [batch, g.const(f"{f}/shape/1:0", np.array([-1], np.int32))],
                    f"{f}/shape_Concat__39", outputs=[f"{f}/shape_Concat__39:0"], axis=0)
    target = g.node("Cast", [target], f"{f}__40", outputs=[f"{f}__40:0"], to=TensorProto.INT64)
    x = g.node("Reshape", [x, target], f, outputs=[f"{f}:0"])
    side = map_side(cfg)
    width, first = cin * side * side, True
    k_head, o_head, texts = [], [], []
    dense_i = bn_i = 0
    for item in head_spec:
        if item[0] == "dense":
            _, out, act = item
            kernel, b = he(rng, (width, out), width), small(rng, out)
            layer = f"{scope}/dense{'_' + str(dense_i) if dense_i else ''}"
            x = g.node("MatMul", [x, g.const(f"{layer}/MatMul/ReadVariableOp:0", kernel)],
                       f"{layer}/MatMul", outputs=[f"{layer}/MatMul:0"])
            x = g.node("Add", [x, g.const(f"{layer}/BiasAdd/ReadVariableOp:0", b)],
                       f"{layer}/BiasAdd", outputs=[f"{layer}/BiasAdd:0"])
            w = kernel.T  # ours: [out, in], in CHW order for the first dense layer
            if first:
                w = kernel.reshape(side, side, cin, out).transpose(2, 0, 1, 3).reshape(width, out).T
            o_head.append((w, b))
            texts.append(str(out))
            if act == "relu":
                x = g.node("Relu", [x], f"{layer}/Relu", outputs=[f"{layer}/Relu:0"])
                texts.append("relu")
            elif act == "softmax":
                x = g.node("Softmax", [x], f"{layer}/Softmax", outputs=[f"dense_{dense_i}"],
                           axis=softmax_axis)
                texts.append("softmax")
            k_head.append(("dense", kernel, b, act))
            width, first, dense_i = out, False, dense_i + 1
        else:  # BatchNormalization -> Mul, Add (Keras epsilon 1e-3)
            gamma, beta, mean, var = bn_stats(rng, width)
            scale = (gamma / np.sqrt(var.astype(np.float64) + 1e-3)).astype(np.float32)
            shift = (beta - mean * scale).astype(np.float32)
            layer = f"{scope}/batch_normalization{'_' + str(bn_i) if bn_i else ''}/batchnorm"
            x = g.node("Mul", [x, g.const(f"{layer}/mul:0", scale)], f"{layer}/mul_1",
                       outputs=[f"{layer}/mul_1:0"])
            x = g.node("Add", [x, g.const(f"{layer}/sub:0", shift)], f"{layer}/add_1",
                       outputs=[f"{layer}/add_1:0"])
            k_head.append(("bn", gamma, beta, mean, var))  # Keras's own BN, eps 1e-3
            o_head.append([scale, shift, np.zeros(width, np.float32),
                           np.full(width, 1.0 - 1e-5, np.float32)])
            texts.append("bn")
            bn_i += 1
    inp = helper.make_tensor_value_info("input_1", TensorProto.FLOAT, ["unk__0", SIZE, SIZE, 3])
    out = helper.make_tensor_value_info(x, TensorProto.FLOAT, ["unk__1", width])
    data = g.model(inp, out, 13, ir_version=7, doc="tf2onnx (Keras) style")
    return data, k_convs, k_head, o_convs, o_head, ",".join(texts), side


KERAS_CASES = [  # name, cfg, head, flatten plumbing, auto_pad, softmax axis, seed
    ("keras_op13_transfer_head", "8,M,16,M,16,M",
     [("dense", 64, "relu"), ("bn",), ("dense", 32, "relu"), ("bn",), ("dense", 4, "softmax")],
     "slice", False, -1, 31),
    ("keras_op13_vgg_top", "8,8,M,16,M,16,M",
     [("dense", 32, "relu"), ("dense", 32, "relu"), ("dense", 5, "softmax")],
     "gather", True, 1, 32),
]


def write_keras(manifest):
    for name, cfg, head_spec, flatten, auto_pad, axis, seed in KERAS_CASES:
        data, k_convs, k_head, o_convs, o_head, head, side = keras_graph(
            cfg, head_spec, flatten, auto_pad, axis, seed)
        x = inputs(300 + seed, (2, SIZE, SIZE, 3))
        ours = load_ours(cfg, False, side, head, o_convs, o_head)
        entry = {"style": "keras", "exporter": "helper", "input_layout": "NHWC",
                 "dropout_in_graph": False,
                 "notes": {"first_dense_rows": "HWC order (NHWC flatten)",
                           "flatten": {"slice": "Shape, Cast, Slice, Concat [-1], Cast, Reshape",
                                       "gather": "Shape, Cast, Gather, Unsqueeze, Concat [-1], "
                                                 "Cast, Reshape"}[flatten],
                           "conv_padding": "auto_pad SAME_UPPER" if auto_pad
                           else "pads [1,1,1,1]",
                           "head_bn": "Mul [F] + Add [F] (Keras eps 1e-3 folded in)"},
                 "expected": {"cfg": cfg, "batch_norm": False, "pool": side, "head": head,
                              "num_params": num_params(ours),
                              "outputs_probabilities": head.endswith("softmax")}}
        y = write(name, data, x, entry, manifest)
        diff = max_diff(y, keras_reference(x, k_convs, k_head))
        assert diff <= 1e-5, f"{name}: onnxruntime vs the Keras (numpy NHWC) forward: {diff}"
        check_ours(name, ours, x.transpose(0, 3, 1, 2), y)


# invalid ----------------------------------------------------------------------------------------

def invalid_graph(kind, seed):
    rng = np.random.default_rng(seed)
    g, x = Graph(), "input"
    conv = dict(kernel_shape=[3, 3], pads=[1, 1, 1, 1])
    x = g.node("Conv", [x, g.const("conv0.weight", he(rng, (8, 3, 3, 3), 27)),
                        g.const("conv0.bias", small(rng, 8))], "conv0", **conv)
    x = g.node("Relu", [x], "relu0")
    skip = x
    if kind == "conv5x5":
        x = g.node("MaxPool", [x], "pool0", kernel_shape=[2, 2], strides=[2, 2])
        x = g.node("Conv", [x, g.const("conv1.weight", he(rng, (8, 8, 5, 5), 200)),
                            g.const("conv1.bias", small(rng, 8))], "conv1",
                   kernel_shape=[5, 5], pads=[2, 2, 2, 2])
        bad = ("conv1", "Conv")
    elif kind == "add_branch":
        x = g.node("Conv", [x, g.const("conv1.weight", he(rng, (8, 8, 3, 3), 72)),
                            g.const("conv1.bias", small(rng, 8))], "conv1", **conv)
        x = g.node("Relu", [x], "relu1")
        x = g.node("Add", [skip, x], "residual_add")
        bad = ("residual_add", "Add")
    else:  # maxpool3x3s2: a ResNet-stem pool
        x = g.node("MaxPool", [x], "pool0", kernel_shape=[3, 3], strides=[2, 2],
                   pads=[1, 1, 1, 1])
        bad = ("pool0", "MaxPool")
    if kind != "conv5x5":
        x = g.node("Conv", [x, g.const("conv2.weight", he(rng, (8, 8, 3, 3), 72)),
                            g.const("conv2.bias", small(rng, 8))], "conv2", **conv)
    x = g.node("Relu", [x], "relu2")
    x = g.node("MaxPool", [x], "pool1", kernel_shape=[2, 2], strides=[2, 2])
    x = g.node("Flatten", [x], "flatten", axis=1)
    side = {"conv5x5": 8, "add_branch": 16, "maxpool3x3s2": 8}[kind]
    x = g.node("Gemm", [x, g.const("fc.weight", he(rng, (3, 8 * side * side), 8 * side * side)),
                        g.const("fc.bias", small(rng, 3))], "fc", transB=1)
    inp = helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 3, SIZE, SIZE])
    out = helper.make_tensor_value_info(x, TensorProto.FLOAT, [1, 3])
    return g.model(inp, out, 13, ir_version=7, doc=f"not VGG-shaped: {kind}"), bad


INVALID_CASES = [  # name, kind, seed, why
    ("not_vgg_conv5x5", "conv5x5", 41, "a 5x5 convolution where VGG has 3x3"),
    ("not_vgg_add_branch", "add_branch", 42, "a residual Add joining two branches"),
    ("not_vgg_maxpool3x3s2", "maxpool3x3s2", 43, "a 3x3/2 max-pool (ResNet stem), not 2x2/2"),
]


def write_invalid(manifest):
    for name, kind, seed, why in INVALID_CASES:
        data, (bad_name, bad_op) = invalid_graph(kind, seed)
        x = inputs(400 + seed, (1, 3, SIZE, SIZE))
        entry = {"style": "invalid", "exporter": "helper", "dropout_in_graph": False,
                 "first_bad_node": {"name": bad_name, "op_type": bad_op}, "notes": {"why": why}}
        write(name, data, x, entry, manifest)


# ---------------------------------------------------------------------------------------------

if __name__ == "__main__":
    torch.set_num_threads(2)
    print(f"torch {torch.__version__} torchvision {torchvision.__version__} onnx {onnx.__version__}"
          f" onnxruntime {ort.__version__}", file=sys.stderr)
    os.makedirs(OUT, exist_ok=True)
    parts = {"torch": write_torch, "zoo": write_zoo, "keras": write_keras,
             "invalid": write_invalid}
    path = os.path.join(OUT, "manifest.json")
    old = json.load(open(path)) if os.path.exists(path) else []
    manifest, styles = [], set()
    for part in sys.argv[1:] or parts:  # e.g. `make_onnx_fixtures.py keras` redoes just those
        parts[part](manifest)
        styles.add(part)
    # keep the other parts' entries, in the canonical order of the parts
    merged = [e for e in old if e["style"] not in styles] + manifest
    order = list(parts)
    merged.sort(key=lambda e: order.index(e["style"]))
    with open(path, "w") as f:
        json.dump(merged, f, indent=1)
        f.write("\n")
