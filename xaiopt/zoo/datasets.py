"""``load_dataset``: dataset names from a study config resolved to an :class:`EvalData` batch.

- ``benchmark``: the first ``n`` samples of the embedded synthetic benchmark's split (``test``
  by default, never trained on), with masks; balanced across the 4 classes.
- ``imagefolder:<path>``: class sub-folders, optional masks; see :mod:`xaiopt.zoo.imagefolder`.
- ``imagenet:<path>``: ILSVRC-2012 validation images with bounding-box masks; see
  :mod:`xaiopt.zoo.imagenet`.
- ``voc:<path>``: Pascal VOC 2012 segmentation, the largest object's mask; see :mod:`xaiopt.zoo.voc`.
- ``coco:<path>``: MS COCO 2017 with instance annotations, the largest category's mask; see
  :mod:`xaiopt.zoo.coco`.
- ``python:<name>``: a batch registered in this process (:mod:`xaiopt.zoo.registered`), its first ``n``
  samples as given (no selection, resizing or class mapping).

Every image scheme shares :mod:`xaiopt.zoo.transforms` (resize shorter side, centre crop; masks
nearest neighbour), the class mapping of :mod:`xaiopt.zoo.classes` (labels are indices of the
model's classes) and the seeded balanced selection of :mod:`xaiopt.zoo.selection`.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from xaiopt.errors import ConfigError, UnknownNameError
from xaiopt.zoo import synthetic
from xaiopt.zoo.batch_size import check_batch_size
from xaiopt.zoo.classes import explicit_class_map
from xaiopt.zoo.clevr_xai import load_clevr_xai_split
from xaiopt.zoo.coco import load_coco
from xaiopt.zoo.evaldata import EvalData
from xaiopt.zoo.imagefolder import load_imagefolder
from xaiopt.zoo.imagenet import load_imagenet
from xaiopt.zoo.transforms import Normalization
from xaiopt.zoo.voc import load_voc

DEFAULT_IMAGE_SIZE = 224


@dataclass(frozen=True)
class DatasetRequest:
    """What a study asks of a dataset scheme (the part of the name after ``scheme:`` is ``path``)."""

    path: str
    n: int
    seed: int
    split: str | None
    image_size: int | None
    classes: Sequence[str] | str | None
    n_classes: int | None
    normalization: Normalization | None

    @property
    def size(self) -> int:
        return DEFAULT_IMAGE_SIZE if self.image_size is None else self.image_size

    @property
    def norm(self) -> Normalization:
        return self.normalization or Normalization()


_Loader = Callable[[DatasetRequest], EvalData]
_SCHEMES: dict[str, _Loader] = {}


def _scheme(name: str) -> Callable[[_Loader], _Loader]:
    def decorate(loader: _Loader) -> _Loader:
        _SCHEMES[name] = loader
        return loader

    return decorate


def dataset_help() -> str:
    return ", ".join(["benchmark", *(f"{s}:<path>" for s in _SCHEMES), "python:<registered name>"])


def check_dataset_size(name: str, *, n: int, image_size: int | None) -> None:
    """Refuse an image size or a batch too large to load (:mod:`xaiopt.zoo.batch_size`) before anything
    is read or allocated: one ConfigError line. ``benchmark`` has its one size; a registered batch
    exists already."""
    if name == "benchmark":
        _benchmark_size(image_size)
        check_batch_size(name, n=n, image_size=synthetic.IMAGE_SIZE)
    elif not name.startswith("python:"):
        check_batch_size(name, n=n, image_size=DEFAULT_IMAGE_SIZE if image_size is None else image_size)


def load_dataset(
    name: str,
    *,
    n: int,
    seed: int = 0,
    cache_dir: str | os.PathLike[str] | None = None,
    split: str | None = None,
    image_size: int | None = None,
    classes: Sequence[str] | str | None = None,
    n_classes: int | None = None,
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
) -> EvalData:
    """Load ``n`` evaluation samples, deterministic in ``seed``.

    ``split`` applies to ``benchmark`` (``"test"`` (default) or ``"train"``), ``voc``
    (``"val"`` (default), ``"train"``, ``"trainval"``) and ``coco`` (``"val"`` (default),
    ``"train"``); for the folder schemes the folder is the
    split. ``image_size`` defaults to 64 for ``benchmark`` (the only size it has) and 224 for the
    others. ``classes`` (names, or a file with one per line) maps class names to the model's
    indices, ``n_classes`` draws a seeded subset of the classes, ``mean``/``std`` replace the
    ImageNet normalisation; none of them applies to ``benchmark``. ``cache_dir`` is accepted for
    symmetry with :func:`load_model`; the benchmark is regenerated on the fly (milliseconds).

    Example:
        >>> from xaiopt.zoo import load_dataset
        >>> data = load_dataset("benchmark", n=32, seed=0)
        >>> data.x.shape, data.masks.dtype, data.y.bincount().tolist()
        (torch.Size([32, 3, 64, 64]), torch.bool, [8, 8, 8, 8])
    """
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ConfigError(f"n={n!r} is invalid; valid: a positive integer")
    check_dataset_size(name, n=n, image_size=image_size)
    if (mean is None) != (std is None):
        raise ConfigError("data.mean and data.std go together; valid: both (3 numbers each) or neither")
    normalization = Normalization(tuple(mean), tuple(std)) if mean is not None and std is not None else None
    if name == "benchmark":
        for option, value in (("classes", classes), ("n_classes", n_classes), ("mean", mean)):
            if value is not None:
                raise ConfigError(f"data.{option} is invalid for dataset 'benchmark' (its {synthetic.NUM_CLASSES} "
                                  f"classes and normalisation are fixed); valid: unset")
        return _benchmark(n=n, seed=seed, split=split or "test", image_size=image_size)
    scheme, _, rest = name.partition(":")
    if scheme == "python" and rest:
        return _registered(rest, n=n, split=split, image_size=image_size, classes=classes, n_classes=n_classes,
                           mean=mean)
    loader = _SCHEMES.get(scheme)
    if loader is None or not rest:
        raise UnknownNameError(f"dataset {name!r} is unknown; valid: {dataset_help()}")
    if split is not None and scheme not in ("voc", "coco", "clevr_xai"):
        raise ConfigError(f"data.split={split!r} is invalid for dataset {name!r} (the folder is the split); "
                          f"valid: unset")
    return loader(DatasetRequest(path=rest, n=n, seed=seed, split=split, image_size=image_size, classes=classes,
                                 n_classes=n_classes, normalization=normalization))


def _benchmark_size(image_size: int | None) -> None:
    if image_size not in (None, synthetic.IMAGE_SIZE):
        raise ConfigError(
            f"image_size={image_size} is invalid for dataset 'benchmark'; valid: {synthetic.IMAGE_SIZE} (or unset)"
        )


def _benchmark(*, n: int, seed: int, split: str, image_size: int | None) -> EvalData:
    if split not in synthetic.SPLITS:
        raise ConfigError(f"split={split!r} is invalid for dataset 'benchmark'; valid: {', '.join(synthetic.SPLITS)}")
    _benchmark_size(image_size)
    batch = synthetic.generate(n, seed=seed, split=split)
    low, high = synthetic.input_bounds()
    return EvalData(
        x=batch.x,
        y=batch.y,
        masks=batch.masks,
        low=low,
        high=high,
        num_classes=synthetic.NUM_CLASSES,
        class_names=synthetic.CLASS_NAMES,
    )


def _registered(name: str, *, n: int, split: str | None, image_size: int | None, classes: object,
                n_classes: int | None, mean: object) -> EvalData:
    from xaiopt.zoo.registered import get_dataset

    for option, value in (("split", split), ("image_size", image_size), ("classes", classes),
                          ("n_classes", n_classes), ("mean", mean)):
        if value is not None:
            raise ConfigError(f"data.{option} is invalid for the registered dataset 'python:{name}' (its samples "
                              f"are used as given); valid: unset")
    return get_dataset(name, n=n)


@_scheme("imagefolder")
def _imagefolder(req: DatasetRequest) -> EvalData:
    return load_imagefolder(req.path, n=req.n, seed=req.seed, image_size=req.size, classes=req.classes,
                            n_classes=req.n_classes, normalization=req.norm)


@_scheme("imagenet")
def _imagenet(req: DatasetRequest) -> EvalData:
    return load_imagenet(req.path, n=req.n, seed=req.seed, image_size=req.size, classes=req.classes,
                         n_classes=req.n_classes, normalization=req.norm)


@_scheme("voc")
def _voc(req: DatasetRequest) -> EvalData:
    return load_voc(req.path, n=req.n, seed=req.seed, image_size=req.size, split=req.split, classes=req.classes,
                    n_classes=req.n_classes, normalization=req.norm)


@_scheme("clevr_xai")
def _clevr_xai(req: DatasetRequest) -> EvalData:
    if req.n_classes is not None:
        raise ConfigError(f"data.n_classes is invalid for dataset 'clevr_xai:{req.path}' (the answers are the "
                          f"classes); valid: unset")
    answers = None if req.classes is None else explicit_class_map(req.classes, label=f"clevr_xai:{req.path}").names
    return load_clevr_xai_split(req.path, n=req.n, seed=req.seed, split=req.split, image_size=req.image_size,
                                answers=answers, normalization=req.normalization)


@_scheme("coco")
def _coco(req: DatasetRequest) -> EvalData:
    return load_coco(req.path, n=req.n, seed=req.seed, image_size=req.size, split=req.split, classes=req.classes,
                     n_classes=req.n_classes, normalization=req.norm)

