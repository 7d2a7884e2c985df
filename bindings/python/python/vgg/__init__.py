"""torchvision's VGG networks in Rust: torchsummary-exact summaries, a CPU engine about
twice as fast as PyTorch's, checkpoints in and out (.pth, safetensors), and pictures.

    >>> from vgg import summary
    >>> import vgg
    >>> summary(vgg.models.vgg11(), (3, 64, 64))        # prints torchsummary's table
    >>> model = vgg.load("vgg16-397923af.pth")           # arch detected from the file
    >>> logits = model(batch)                            # float32 NCHW numpy array in, numpy out

Everything runs in the Rust library (`vgg` on crates.io's terms: the same code as the `vgg`
command line); this package converts arguments and displays results in notebooks.
"""

from . import models
from ._display import SVG, Report, Summary
from ._vgg import (
    Model,
    WeightsError,
    __version__,
    get_memory_limit,
    get_num_threads,
    set_memory_limit,
    set_num_threads,
)
from .api import compare, diagram, dissect, load, preprocess, summary

__all__ = [
    "Model",
    "Report",
    "SVG",
    "Summary",
    "WeightsError",
    "__version__",
    "compare",
    "diagram",
    "dissect",
    "get_memory_limit",
    "get_num_threads",
    "load",
    "models",
    "preprocess",
    "set_memory_limit",
    "set_num_threads",
    "summary",
]
