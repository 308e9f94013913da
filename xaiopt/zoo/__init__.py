"""Models and datasets by name: the embedded offline benchmark, torchvision, ImageFolder, user code.

The embedded benchmark needs no download. Each 3x64x64 image shows one filled shape (circle,
square, triangle or plus) that alone decides the class, at a random position, size, rotation and
colour, on a textured noisy background with one or two distractors (thin rings and line segments,
never a class shape) that carry no label information. The object's pixel mask is known, so
localization metrics are meaningful. Pixels are normalised per channel (mean 0.4, std 0.25) and
``low``/``high`` give the bounds of the normalised input space. Small BatchNorm CNNs (``vgg``,
``resnet``, ``densenet``; well under a minute each on a laptop CPU) and a small Vision Transformer
(``vit``; about 50 s) are trained on it deterministically on first use and cached with a checksum.

Real data: ``imagefolder:PATH`` (optional masks), ``imagenet:PATH`` (ILSVRC-2012 val with
bounding-box masks) and ``voc:PATH`` (VOC 2012 segmentation); labels are indices of the model's
classes (wnid folders are ImageNet indices), see docs/datasets.md.

Example:
    >>> from xaiopt.zoo import load_model, load_dataset
    >>> model = load_model("benchmark:vgg")
    >>> data = load_dataset("benchmark", n=32, seed=0)
    >>> (model(data.x).argmax(1) == data.y).float().mean() >= 0.95
    tensor(True)
"""

from xaiopt.zoo.cache import CACHE_ENV_VAR, CacheCorruptedWarning, resolve_cache_dir
from xaiopt.zoo.datasets import load_dataset
from xaiopt.zoo.evaldata import EvalData
from xaiopt.zoo.models import load_model

__all__ = [
    "CACHE_ENV_VAR",
    "CacheCorruptedWarning",
    "EvalData",
    "load_dataset",
    "load_model",
    "resolve_cache_dir",
]
