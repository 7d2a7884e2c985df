"""The models as torchvision spells them: ``vgg.models.vgg16(weights=PATH)``, and
``vgg.models.custom(cfg=[64, "M", ...])`` for VGG-style networks of any shape."""

import os
from typing import Optional, Sequence, Union

from ._vgg import Model

PathLike = Union[str, "os.PathLike[str]"]

__all__ = ["custom", "vgg11", "vgg11_bn", "vgg13", "vgg13_bn", "vgg16", "vgg16_bn", "vgg19", "vgg19_bn"]


def _open(arch: str, weights: Optional[PathLike], strict: bool, seed: int, **config) -> Model:
    return Model.open(
        arch,
        weights=None if weights is None else os.fspath(weights),
        strict=strict,
        seed=seed,
        **config,
    )


def _named(arch: str):
    def build(
        *,
        weights: Optional[PathLike] = None,
        num_classes: Optional[int] = None,
        dropout: Optional[float] = None,
        strict: bool = True,
        seed: int = 0,
    ) -> Model:
        return _open(arch, weights, strict, seed, num_classes=num_classes, dropout=dropout)

    build.__name__ = build.__qualname__ = arch
    build.__doc__ = f"""torchvision's ``{arch}``: its layers, parameter names and initialisation.

    Args:
        weights: a checkpoint to load (torchvision ``.pth`` in the zip or legacy format,
            safetensors, or a ``vgg train`` checkpoint); random weights when ``None``.
        num_classes: outputs of the last layer (default 1000, as torchvision's; a checkpoint
            of another class count needs it, or use ``vgg.load``, which reads it from the file).
        dropout: the classifier's dropout probability (default 0.5).
        strict: refuse any difference between checkpoint and model (``load_state_dict``'s
            ``strict``); when ``False`` load what fits and initialise the rest.
        seed: seeds the initialisation of whatever is not loaded, and dropout.

    Raises:
        FileNotFoundError: ``weights`` does not exist.
        vgg.WeightsError: ``weights`` is not a checkpoint, or does not fit ``{arch}``.
    """
    return build


vgg11 = _named("vgg11")
vgg11_bn = _named("vgg11_bn")
vgg13 = _named("vgg13")
vgg13_bn = _named("vgg13_bn")
vgg16 = _named("vgg16")
vgg16_bn = _named("vgg16_bn")
vgg19 = _named("vgg19")
vgg19_bn = _named("vgg19_bn")


def custom(
    cfg: Sequence[Union[int, str]],
    *,
    batch_norm: bool = False,
    hidden: Optional[int] = None,
    pool: int = 7,
    num_classes: Optional[int] = None,
    dropout: Optional[float] = None,
    in_channels: int = 3,
    head: Union[str, Sequence[Union[int, str]], None] = None,
    weights: Optional[PathLike] = None,
    strict: bool = True,
    seed: int = 0,
) -> Model:
    """A VGG-style network: ``cfg`` lists 3×3 convolutions by their output channels and
    2×2 max-pools as ``"M"``, as torchvision's ``cfgs`` table does, e.g.
    ``[32, "M", 64, "M", 128, 128, "M"]`` (or as text, ``"32,M,64,M,128,128,M"``).

    Args:
        batch_norm: a BatchNorm2d after every convolution.
        hidden: width of every Linear but the last (torchvision's two hidden layers;
            4096 by default).
        pool: output size of the adaptive average pool before the classifier.
        num_classes: width of the last Linear (1000 by default).
        dropout: probability of every dropout in the head (0.5 by default).
        in_channels: channels of the input images.
        head: the whole classifier, item by item, as ``--head`` text or a list:
            ``N`` (a Linear to N features), ``"relu"``, ``"dropout"``, ``"dropout=P"``,
            ``"bn"`` (BatchNorm1d), ``"softmax"``; torchvision's is
            ``[4096, "relu", "dropout", 4096, "relu", "dropout", 1000]``.
        weights, strict, seed: as for :func:`vgg16`.
    """
    return _open(
        "custom",
        weights,
        strict,
        seed,
        cfg=cfg,
        batch_norm=batch_norm,
        hidden=hidden,
        pool=pool,
        num_classes=num_classes,
        dropout=dropout,
        in_channels=in_channels,
        head=head,
    )
