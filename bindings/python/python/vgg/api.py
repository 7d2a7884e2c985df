"""The package's functions: summaries, loading, preprocessing and pictures."""

import json
import numbers
import os
import sys
from typing import Any, Iterable, List, Optional, Sequence, Tuple, Union

from . import _vgg
from ._display import SVG, Report, Summary
from ._vgg import Model

PathLike = Union[str, "os.PathLike[str]"]


def summary(
    model: Any,
    input_size: Union[Tuple[int, int, int], List[Tuple[int, int, int]]],
    batch_size: int = -1,
    device: Optional[str] = None,
    *,
    format: str = "torchsummary",
    columns: Union[str, Sequence[str], None] = None,
    depth: int = 3,
    frozen: Union[str, Sequence[str]] = (),
    dense: bool = False,
    file=None,
) -> Summary:
    """Prints the model's layer table exactly as ``torchsummary.summary`` does (or, with
    ``format="torchinfo"``, as ``torchinfo.summary``), and returns it as a :class:`Summary`.

    Args:
        model: a :class:`vgg.Model`, an arch name (``"vgg16"``), a dict of
            :func:`vgg.models.custom`'s arguments (``{"cfg": [32, "M"], "num_classes": 10}``:
            no weights are made), or a torchvision VGG module (read through its structure;
            torch is needed only for that).
        input_size: ``(C, H, W)`` of one image, as torchsummary takes it (or a list of
            that one size: a VGG has one input).
        batch_size: the batch shown in the table; -1 prints ``-1`` as torchsummary does.
        device: accepted for torchsummary compatibility and ignored (everything runs on the CPU).
        format: ``"torchsummary"`` or ``"torchinfo"``.
        columns: torchinfo's ``col_names`` (``input_size``, ``output_size``, ``num_params``,
            ``params_percent``, ``kernel_size``, ``mult_adds``, ``trainable``).
        depth: torchinfo's ``depth``.
        frozen: parts whose parameters count as non-trainable (``features``, ``classifier``).
        dense: summarise the paper's dense (fully convolutional) form: fc6 as a pool×pool
            convolution, fc7 and fc8 as 1×1 ones; the input must be at least the native size.
        file: where to print (default ``sys.stdout``).
    """
    del device
    if isinstance(input_size, list) and len(input_size) == 1:
        input_size = input_size[0]
    size = _chw(input_size)
    source = _source(model)
    columns = None if columns is None else _strings(columns)
    text, data = _vgg.summary_tables(source, size, batch_size, format, columns, depth, _strings(frozen), dense)
    (file or sys.stdout).write(text)
    return Summary(text, json.loads(data))


def _strings(items: Union[str, Iterable[str]]) -> List[str]:
    """One name or several as a list: a string is one name, not its characters."""
    return [items] if isinstance(items, str) else list(items)


def _source(model: Any) -> Any:
    """What the Rust side takes for a model: ours, a name, a dict of
    ``vgg.models.custom``'s arguments, or a torchvision VGG's config."""
    if isinstance(model, (Model, str, dict)):
        return model
    if type(model).__module__.startswith("torch"):
        from ._torch import config_of

        return config_of(model)
    raise TypeError(
        f"expected a vgg.Model, an arch name, a config dict or a torchvision VGG, got {type(model).__name__}"
    )


def load(
    path: PathLike,
    *,
    strict: bool = True,
    seed: int = 0,
    num_classes: Optional[int] = None,
    precision: str = "f32",
) -> Model:
    """The model a checkpoint holds, its arch detected from its tensors: torchvision
    ``.pth`` (zip or legacy), safetensors, a ``vgg train`` checkpoint, or an ONNX model whose
    graph is a VGG (torchvision's export, the ONNX Model Zoo's, Keras' through tf2onnx).
    ``precision``: the fast engine's number format, ``"f32"``, ``"bf16"`` or ``"int8"`` (a
    file ``vgg quantize`` wrote; see ``Model.precision``).

    Raises:
        FileNotFoundError: no such file.
        vgg.WeightsError: not a checkpoint we read, or not a VGG.
        ValueError: an unknown precision, or int8 for a file without a calibration.
    """
    return Model.open(
        "auto", weights=os.fspath(path), strict=strict, seed=seed, num_classes=num_classes, precision=precision
    )


def _images(images: Any) -> List[Any]:
    """One image or several (paths, PIL images, HxWx3 uint8 arrays) as a list."""
    if isinstance(images, (list, tuple)):
        return [os.fspath(i) if isinstance(i, os.PathLike) else i for i in images]
    return [os.fspath(images) if isinstance(images, os.PathLike) else images]


def preprocess(
    images: Any,
    resize: int = 256,
    crop: int = 224,
    mean: Union[str, Sequence[float], None] = None,
    std: Union[str, Sequence[float], None] = None,
):
    """The exact NCHW float32 batch torchvision's ``Resize(resize)``, ``CenterCrop(crop)``,
    ``ToTensor()`` and ``Normalize(mean, std)`` make of ``images`` (paths or PIL images;
    ImageNet's mean and std by default; each three numbers, or their text "0.5,0.5,0.5")."""
    return _vgg.preprocess(_images(images), resize, crop, mean, std)


def _chw(input_size: Any) -> Tuple[int, int, int]:
    """``input_size`` as three ints, (C, H, W); a string is refused rather than split into
    its characters ("332" would be (3, 3, 2))."""
    if isinstance(input_size, (str, bytes)) or not hasattr(input_size, "__iter__"):
        raise TypeError(f"input_size must be (C, H, W), a tuple of three ints, got {input_size!r}")
    size = tuple(input_size)
    if not all(isinstance(s, numbers.Integral) and not isinstance(s, bool) for s in size):
        raise TypeError(f"input_size must be (C, H, W), a tuple of three ints, got {input_size!r}")
    if len(size) != 3:
        raise ValueError(f"input_size must be (C, H, W), got {input_size!r}")
    return tuple(int(s) for s in size)  # type: ignore[return-value]


def compare(input_size: Tuple[int, int, int] = (3, 224, 224)):
    """The eight variants side by side at ``input_size``: layers, parameters, GFLOPs,
    activation memory and torchvision's ImageNet accuracy. A pandas DataFrame when pandas
    is installed, else a list of dicts."""
    rows = json.loads(_vgg.compare_json(_chw(input_size)))
    try:
        import pandas as pd
    except ImportError:
        return rows
    return pd.DataFrame(rows).set_index("arch")


def diagram(models: Any = None, input_size: Tuple[int, int, int] = (3, 224, 224)) -> SVG:
    """An architecture diagram of one model (a :class:`vgg.Model` or an arch name), several,
    or all eight when ``models`` is ``None``."""
    if models is None:
        models = ["vgg11", "vgg11_bn", "vgg13", "vgg13_bn", "vgg16", "vgg16_bn", "vgg19", "vgg19_bn"]
    items: Iterable[Any] = models if isinstance(models, (list, tuple)) else [models]
    return SVG(_vgg.diagram_svg([_source(m) for m in items], _chw(input_size)))


def dissect(model: Model, image: Any, *, resize: Optional[int] = None, crop: Optional[int] = None) -> Report:
    """One image's trip through ``model``: the input it sees, each conv block's feature maps,
    the first layer's filters, the top-5 classes and a Grad-CAM heatmap. The image is
    preprocessed as the model was trained (a ``vgg train`` checkpoint records it), else as
    torchvision does (256, 224); ``resize`` and ``crop`` override."""
    items = _images(image)
    if len(items) != 1:
        raise ValueError(f"dissect takes one image, got {len(items)}")
    return Report(_vgg.dissect(model, items[0], resize, crop))
