"""How large an evaluation batch may be: checked before a single image is decoded or allocated.

Two limits, each one :class:`~xaiopt.errors.ConfigError` line naming the field, the value and what
is valid:

- **``data.image_size`` is at most 4096 pixels.** One (3, 4096, 4096) float32 image is 201 MB
  before the model sees it, and an LRP trial keeps the activations of every layer of a whole batch
  (a VGG's first block alone: 64 channels, 4.3 GB per image at that size). Explanation studies run
  at the model's input size (224 to 518 pixels for ImageNet classifiers, a few thousand for the
  largest high-resolution ones); a size beyond 4096 is a typo or a misunderstanding, and PIL would
  refuse the resized image as a decompression bomb from about 13,000 pixels on anyway.
- **The evaluation batch fits in memory.** While a folder is loaded the per-image tensors, the
  stacked batch and its normalised copy exist at once: ``3 x n_samples x 3 x size^2 x 4`` bytes,
  checked against the memory available now (``MemAvailable`` of ``/proc/meminfo``, where there
  is one). Nothing else of a study comes close to being that easy to predict, so this is the one
  memory promise made up front: the batch itself, never the model's activations.

Example::

    check_batch_size("imagefolder:/data/photos", n=64, image_size=224)   # fine
    check_batch_size("imagefolder:/data/photos", n=64, image_size=20000) # ConfigError, one line
"""

from __future__ import annotations

import os
from pathlib import Path

from xaiopt.errors import ConfigError

MAX_IMAGE_SIZE = 4096
# copies of the float batch alive at once while a folder dataset is loaded (images, stack, normalised)
COPIES = 3
BYTES_PER_PIXEL = 3 * 4  # RGB float32


def available_memory() -> int | None:
    """Bytes of memory available to a new allocation now, or None where the system does not say."""
    meminfo = Path("/proc/meminfo")
    try:
        for line in meminfo.read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


def _gb(n: float) -> str:
    return f"{n / 1e9:.1f} GB"


def check_batch_size(dataset: str, *, n: int, image_size: int) -> None:
    """Refuse an ``image_size`` above :data:`MAX_IMAGE_SIZE` or a batch of ``n`` such images that the
    memory available now cannot hold; one ConfigError line each (see the module docstring)."""
    if image_size > MAX_IMAGE_SIZE:
        raise ConfigError(f"data.image_size={image_size} is too large for dataset {dataset!r}; valid: 1 to "
                          f"{MAX_IMAGE_SIZE} pixels, the model's input size (usually 224); one "
                          f"{image_size}x{image_size} float32 image alone is {_gb(BYTES_PER_PIXEL * image_size ** 2)}")
    batch = n * BYTES_PER_PIXEL * image_size ** 2
    free = available_memory()
    if free is None or COPIES * batch <= free:
        return
    fits = free // (COPIES * BYTES_PER_PIXEL * image_size ** 2)
    valid = (f"data.n_samples at most {fits} at this size, or a smaller data.image_size" if fits >= 1
             else "a smaller data.image_size")
    raise ConfigError(f"data: {n} samples of {image_size}x{image_size} pixels from dataset {dataset!r} make an "
                      f"evaluation batch of {_gb(batch)} (loading holds {COPIES} copies), more than the {_gb(free)} "
                      f"of memory available; valid: {valid}")
