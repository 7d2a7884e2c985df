"""Reading a torchvision VGG module (only when the user hands us one; torch is never
imported otherwise)."""

from typing import Any, Dict, List, Union


def config_of(module: Any) -> Dict[str, Any]:
    """The config of a torchvision ``VGG``: its features' convolutions and pools, batch norm,
    classifier width, pool size and class count, in ``vgg.models.custom``'s terms."""
    import torch.nn as nn

    if not (hasattr(module, "features") and hasattr(module, "classifier")):
        raise TypeError(f"{type(module).__name__} is not a torchvision VGG (no features/classifier)")
    cfg: List[Union[int, str]] = []
    in_channels = None
    batch_norm = False
    for layer in module.features:
        if isinstance(layer, nn.Conv2d):
            in_channels = in_channels or layer.in_channels
            cfg.append(layer.out_channels)
        elif isinstance(layer, nn.MaxPool2d):
            cfg.append("M")
        elif isinstance(layer, nn.BatchNorm2d):
            batch_norm = True
    linears = [m for m in module.classifier if isinstance(m, nn.Linear)]
    dropouts = [m for m in module.classifier if isinstance(m, nn.Dropout)]
    pool = module.avgpool.output_size
    pool = pool[0] if isinstance(pool, (tuple, list)) else pool
    return {
        "cfg": cfg,
        "batch_norm": batch_norm,
        "in_channels": in_channels or 3,
        "hidden": linears[0].out_features,
        "num_classes": linears[-1].out_features,
        "dropout": dropouts[0].p if dropouts else 0.5,
        "pool": pool,
    }
