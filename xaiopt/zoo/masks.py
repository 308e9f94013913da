"""Whether a dataset has object masks, answered before anything is loaded.

A study checks its metrics' needs against the data before it loads the model (seconds to minutes for
a large one), so a metric that needs masks on data without them fails at once, all such metrics in
one line. The answer comes from the dataset's scheme and what lies on disk:

- ``benchmark``: masks (the synthetic shapes);
- ``imagefolder:PATH``: masks when ``PATH_masks/`` or a sibling ``masks/`` folder exists
  (:mod:`xaiopt.zoo.imagefolder`; a PNG per image, named like it, any nonzero pixel is object);
- ``imagenet:PATH`` (bounding boxes) and ``voc:PATH`` (segmentations): masks;
- ``python:NAME`` (a registered dataset): unknown until it is loaded.
"""

from __future__ import annotations

from pathlib import Path

from xaiopt.zoo.imagefolder import _find_mask_root

# where a user puts masks for an image folder, for the one-line hints
IMAGEFOLDER_MASKS_HINT = ("put one PNG mask per image, named like the image (nonzero = object), in "
                          "{path}_masks/ or in a sibling masks/ folder (docs/datasets.md)")


def masks_available(name: str) -> bool | None:
    """True when dataset ``name`` comes with object masks, False when it has none, None when only
    loading it tells (a registered dataset, or a scheme this module does not know)."""
    if name == "benchmark":
        return True
    scheme, _, rest = name.partition(":")
    if scheme == "imagefolder" and rest:
        root = Path(rest).expanduser()
        if not root.is_dir():
            return None  # loading it gives the one-line error about the path itself
        return _find_mask_root(root) is not None
    if scheme in ("imagenet", "voc") and rest:
        return True
    return None


def masks_hint(name: str) -> str:
    """How to give dataset ``name`` masks, in a few words."""
    scheme, _, rest = name.partition(":")
    if scheme == "imagefolder" and rest:
        return IMAGEFOLDER_MASKS_HINT.format(path=str(Path(rest).expanduser()).rstrip("/"))
    return "use a dataset with object masks (docs/datasets.md)"
