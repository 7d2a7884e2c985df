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
    head = []
    for layer in module.classifier:
        if isinstance(layer, nn.Linear):
            head.append(layer.out_features)
        elif isinstance(layer, nn.ReLU):
            head.append("relu")
        elif isinstance(layer, nn.Dropout):
            head.append(f"dropout={layer.p}")
        elif isinstance(layer, nn.BatchNorm1d):
            head.append("bn")
        elif isinstance(layer, nn.Softmax):
            head.append("softmax")
        else:
            raise ValueError(f"the classifier holds a {type(layer).__name__}; a VGG head has "
                             "Linear, ReLU, Dropout, BatchNorm1d and Softmax layers")
    pool = module.avgpool.output_size
    pool = pool[0] if isinstance(pool, (tuple, list)) else pool
    return {
        "cfg": cfg,
        "batch_norm": batch_norm,
        "in_channels": in_channels or 3,
        "head": head,
        "pool": pool,
    }
