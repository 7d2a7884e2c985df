"""Type stubs of the Rust extension `vgg._vgg`."""

from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np
import numpy.typing as npt

__version__: str

class WeightsError(ValueError):
    """A checkpoint that cannot be read, or that does not fit the model."""

class Model:
    """A VGG network: callable on float32 NCHW arrays, with torchvision's state_dict."""

    @staticmethod
    def open(
        arch: str,
        *,
        cfg: Union[str, Sequence[Union[int, str]], None] = None,
        batch_norm: bool = False,
        hidden: Optional[int] = None,
        pool: Optional[int] = None,
        num_classes: Optional[int] = None,
        dropout: Optional[float] = None,
        in_channels: Optional[int] = None,
        weights: Optional[str] = None,
        strict: bool = True,
        seed: int = 0,
        head: Union[str, Sequence[Union[int, str]], None] = None,
        precision: str = "f32",
    ) -> "Model": ...
    def __deepcopy__(self, memo: Any) -> "Model":
        """A copy with weights of its own (config, weights, precision, mode, class names)."""
    def __copy__(self) -> "Model":
        """As ``__deepcopy__``."""
    def __call__(self, x: Any) -> npt.NDArray[np.float32]:
        """Logits ``[N, num_classes]`` for an NCHW batch (numpy, CPU torch tensor, …)."""
    precision: str
    """The fast engine's number format: ``"f32"`` (default) or ``"bf16"`` (bf16 operands,
    f32 accumulation); training mode and ``features`` compute in f32."""
    def features(self, x: Any, layers: Union[str, Sequence[str]]) -> Dict[str, npt.NDArray[np.float32]]:
        """The outputs of the named modules (``features.3``, ``avgpool``, …; one name or
        several) from one pass."""
    def to_onnx(
        self,
        path: str,
        input_shape: Optional[Tuple[int, int, int, int]] = None,
        dynamic_batch: bool = False,
        opset: int = 17,
    ) -> None:
        """Writes the network as an ONNX graph (initializers named by state_dict keys)."""
    def state_dict(self) -> Dict[str, npt.NDArray[Any]]:
        """Weights and buffers under torchvision's keys, in order."""
    def load_state_dict(self, state_dict: Dict[str, Any], strict: bool = True) -> Dict[str, Any]:
        """Loads weights; strict raises WeightsError on any difference. Returns the report."""
    @property
    def load_report(self) -> Optional[Dict[str, Any]]: ...
    def train(self, mode: bool = True) -> "Model": ...
    def eval(self) -> "Model": ...
    @property
    def training(self) -> bool: ...
    @property
    def config_dict(self) -> Dict[str, Any]: ...
    @property
    def class_names(self) -> List[str]: ...
    def calibrate(
        self,
        images: Any,
        *,
        batch_size: int = 8,
        max_error: float = 0.05,
        resize: Optional[int] = None,
        crop: Optional[int] = None,
        mean: Union[str, Sequence[float], None] = None,
        std: Union[str, Sequence[float], None] = None,
    ) -> List[Dict[str, Any]]:
        """Calibrates int8 on ``images``: one dict per conv and linear layer (path,
        input_min, input_max, relative_rms, max_over_range, int8, kept_because); then set
        ``precision = "int8"``."""
    def classify(
        self,
        images: Any,
        topk: int = 5,
        resize: Optional[int] = None,
        crop: Optional[int] = None,
        mean: Union[str, Sequence[float], None] = None,
        std: Union[str, Sequence[float], None] = None,
        batch_size: int = 8,
        protocol: str = "center",
        scales: Optional[List[int]] = None,
    ) -> List[List[Tuple[int, str, float]]]:
        """The ``topk`` classes of each image (paths, PIL images, HxWx3 uint8 arrays);
        ``protocol`` "center", or the paper's "dense", "multi-crop", "dense+multi-crop"
        over ``scales`` (default: the paper's for the training scale S, [S-32, S, S+32] for
        a checkpoint trained here at a fixed S, else [256, 384, 512]; in proportion to
        ``crop``); multi-crop takes ``crop``-sized crops."""

class Dissection:
    def html(self) -> str: ...
    def save(self, dir: str) -> None: ...
    @property
    def top(self) -> List[Tuple[str, float]]: ...

def summary_tables(
    source: Any,
    input_size: Tuple[int, int, int],
    batch_size: int = -1,
    format: str = "torchsummary",
    columns: Optional[List[str]] = None,
    depth: int = 3,
    frozen: List[str] = ...,
    dense: bool = False,
) -> Tuple[str, str]: ...
def compare_json(input_size: Tuple[int, int, int]) -> str: ...
def diagram_svg(sources: List[Any], input_size: Tuple[int, int, int]) -> str: ...
def save_svg(path: str, svg: str) -> None: ...
def preprocess(
    images: List[Any],
    resize: int = 256,
    crop: int = 224,
    mean: Union[str, Sequence[float], None] = None,
    std: Union[str, Sequence[float], None] = None,
) -> npt.NDArray[np.float32]: ...
def dissect(model: Model, image: Any, resize: Optional[int] = None, crop: Optional[int] = None, title: Optional[str] = None) -> Dissection: ...
def set_num_threads(threads: int) -> None: ...
def get_num_threads() -> int: ...
def set_memory_limit(limit: Union[int, str, None]) -> None: ...
def get_memory_limit() -> int: ...
