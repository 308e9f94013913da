"""``load_dataset``: dataset names from a study config resolved to an :class:`EvalData` batch.

- ``benchmark``: the first ``n`` samples of the embedded synthetic benchmark's split (``test``
  by default, never trained on), with masks; balanced across the 4 classes.
- ``imagefolder:<path>``: class sub-folders, optional masks; see :mod:`xaiopt.zoo.imagefolder`.
"""

from __future__ import annotations

import os
from collections.abc import Callable

from xaiopt.errors import ConfigError, UnknownNameError
from xaiopt.zoo import synthetic
from xaiopt.zoo.evaldata import EvalData
from xaiopt.zoo.imagefolder import load_imagefolder

_DATASET_HELP = "benchmark, imagefolder:<path>"


def load_dataset(
    name: str,
    *,
    n: int,
    seed: int = 0,
    cache_dir: str | os.PathLike[str] | None = None,
    split: str = "test",
    image_size: int | None = None,
) -> EvalData:
    """Load ``n`` evaluation samples, deterministic in ``seed``.

    ``split`` applies to ``benchmark`` (``"test"`` or ``"train"``); for ``imagefolder`` the folder
    is the split. ``image_size`` defaults to 64 for ``benchmark`` (the only size it has) and 224
    for ``imagefolder``. ``cache_dir`` is accepted for symmetry with :func:`load_model`; the
    benchmark is regenerated on the fly (it takes milliseconds).

    Example:
        >>> from xaiopt.zoo import load_dataset
        >>> data = load_dataset("benchmark", n=32, seed=0)
        >>> data.x.shape, data.masks.dtype, data.y.bincount().tolist()
        (torch.Size([32, 3, 64, 64]), torch.bool, [8, 8, 8, 8])
    """
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ConfigError(f"n={n!r} is invalid; valid: a positive integer")
    if name == "benchmark":
        return _benchmark(n=n, seed=seed, split=split, image_size=image_size)
    scheme, _, rest = name.partition(":")
    loader = _SCHEMES.get(scheme)
    if loader is None or not rest:
        raise UnknownNameError(f"dataset {name!r} is unknown; valid: {_DATASET_HELP}")
    return loader(rest, n, seed, image_size)


def _benchmark(*, n: int, seed: int, split: str, image_size: int | None) -> EvalData:
    if split not in synthetic.SPLITS:
        raise ConfigError(f"split={split!r} is invalid for dataset 'benchmark'; valid: {', '.join(synthetic.SPLITS)}")
    if image_size not in (None, synthetic.IMAGE_SIZE):
        raise ConfigError(
            f"image_size={image_size} is invalid for dataset 'benchmark'; valid: {synthetic.IMAGE_SIZE} (or unset)"
        )
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


def _imagefolder(path: str, n: int, seed: int, image_size: int | None) -> EvalData:
    return load_imagefolder(path, n=n, seed=seed, image_size=224 if image_size is None else image_size)


_SCHEMES: dict[str, Callable[[str, int, int, int | None], EvalData]] = {"imagefolder": _imagefolder}
