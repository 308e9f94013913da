"""Which logit of the model a dataset's class name is: folder names, wnids, VOC names -> class index.

A dataset's labels must be indices of the *model's* classes, or the explanation of "class 3" is
the explanation of whatever the model calls 3. The mapping is decided, in this order:

1. ``data.classes``: a list of names (or a text file with one name per line); a name's position
   is its index. Every class name the dataset uses must be in it.
2. All names are integers (``"0"``, ``"17"``, ``"999"``): they are the indices.
3. All names are ImageNet WordNet ids (``n01440764`` ...): the ILSVRC-2012 index, i.e. the position
   in the sorted list of the 1000 synsets (embedded as ``xaiopt/zoo/data/imagenet_synsets.txt``;
   human-readable names from torchvision's ImageNet category list).
4. Otherwise (plain names): the sorted names are the classes 0..K-1 (only right for a model
   trained on exactly these folders).

Example:
    >>> from xaiopt.zoo.classes import folder_class_map
    >>> cmap = folder_class_map(["n15075141", "n01440764"], None, label="imagefolder:photos")
    >>> cmap.kind, cmap.num_classes, cmap.lookup("n15075141", label="imagefolder:photos")
    ('ImageNet wnids', 1000, 999)
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from xaiopt.errors import ConfigError

WNID = re.compile(r"^n\d{8}$")
_INTEGER = re.compile(r"^\d+$")


@dataclass(frozen=True)
class ClassMap:
    """Dataset class names -> model class indices, and a display name per index."""

    index: Mapping[str, int]
    names: tuple[str, ...]
    kind: str
    valid: str  # what a name may be, for the one-line error

    @property
    def num_classes(self) -> int:
        return len(self.names)

    def lookup(self, name: str, *, label: str, what: str = "folder") -> int:
        """The index of ``name``; a :class:`ConfigError` naming it and what is valid otherwise."""
        found = self.index.get(name)
        if found is None:
            raise ConfigError(f"dataset {label!r}: {what} {name!r} is not in the class mapping ({self.kind}); "
                              f"valid: {self.valid}")
        return found


@functools.cache
def imagenet_wnids() -> tuple[str, ...]:
    """The 1000 ILSVRC-2012 synsets in index order (sorted)."""
    text = resources.files("xaiopt.zoo").joinpath("data/imagenet_synsets.txt").read_text(encoding="utf-8")
    return tuple(text.split())


@functools.cache
def imagenet_names() -> tuple[str, ...]:
    """A readable name per ImageNet-1k index (torchvision's list; the wnids if it is unavailable)."""
    try:  # a private table of torchvision; the wnids are the fallback, never wrong, only less readable
        from torchvision.models._meta import _IMAGENET_CATEGORIES

        if len(_IMAGENET_CATEGORIES) == 1000:
            return tuple(_IMAGENET_CATEGORIES)
    except ImportError:
        pass
    return imagenet_wnids()


@functools.cache
def imagenet_class_map() -> ClassMap:
    """wnid -> ILSVRC-2012 index (0..999)."""
    wnids = imagenet_wnids()
    return ClassMap(index={w: i for i, w in enumerate(wnids)}, names=imagenet_names(), kind="ImageNet wnids",
                    valid=f"one of the 1000 ILSVRC-2012 wnids ({wnids[0]} ... {wnids[-1]}), or map the names "
                          f"with data.classes")


def dataset_class_map(classes: Sequence[str] | str | None, names: Sequence[str], *, label: str,
                      kind: str) -> ClassMap:
    """``data.classes`` when given (:func:`explicit_class_map`), else the dataset's own ``names`` in order
    (``kind`` names them in errors, e.g. "VOC classes")."""
    if classes is not None:
        return explicit_class_map(classes, label=label)
    names = tuple(names)
    return ClassMap(index={c: i for i, c in enumerate(names)}, names=names, kind=kind, valid=", ".join(names))


def explicit_class_map(classes: Sequence[str] | str, *, label: str) -> ClassMap:
    """``data.classes``: a list of names, or the path of a text file with one name per line."""
    if isinstance(classes, str):
        names = _read_class_file(Path(classes).expanduser(), label)
    else:
        names = [str(c).strip() for c in classes]
    duplicate = sorted({n for n in names if names.count(n) > 1})
    if duplicate:
        raise ConfigError(f"data.classes: {duplicate[0]!r} appears twice; valid: each class name once "
                          f"(its position is its index)")
    if any(not n for n in names):
        raise ConfigError("data.classes: an empty class name; valid: one non-empty name per class")
    return ClassMap(index={n: i for i, n in enumerate(names)}, names=tuple(names), kind="data.classes",
                    valid=_listing(names, "data.classes"))


def folder_class_map(folder_names: Iterable[str], classes: Sequence[str] | str | None, *, label: str) -> ClassMap:
    """The mapping for a dataset whose class names are ``folder_names``; see the module docstring."""
    folders = sorted(folder_names)
    if classes is not None:
        cmap = explicit_class_map(classes, label=label)
        for folder in folders:
            cmap.lookup(folder, label=label)
        return cmap
    if folders and all(_INTEGER.match(f) for f in folders):
        top = max(int(f) for f in folders)
        return ClassMap(index={f: int(f) for f in folders}, names=tuple(str(i) for i in range(top + 1)),
                        kind="integer class indices", valid="an integer class index")
    wnid_like = [f for f in folders if WNID.match(f)]
    if wnid_like:
        other = next((f for f in folders if not WNID.match(f)), None)
        if other is not None:
            raise ConfigError(
                f"dataset {label!r}: folder {other!r} is not an ImageNet wnid while {wnid_like[0]!r} is; valid: "
                f"all folders wnids, all integer class indices, all plain names (sorted order = index), "
                f"or a mapping in data.classes")
        cmap = imagenet_class_map()
        for folder in folders:
            cmap.lookup(folder, label=label)
        return cmap
    integer_like = [f for f in folders if _INTEGER.match(f)]
    if integer_like:
        other = next(f for f in folders if not _INTEGER.match(f))
        raise ConfigError(
            f"dataset {label!r}: folder {other!r} is not an integer class index while {integer_like[0]!r} is; "
            f"valid: all folders integers, all ImageNet wnids, all plain names (sorted order = index), "
            f"or a mapping in data.classes")
    return ClassMap(index={f: i for i, f in enumerate(folders)}, names=tuple(folders),
                    kind="sorted folder names", valid=_listing(folders, "folders"))


def _read_class_file(path: Path, label: str) -> list[str]:
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as error:
        raise ConfigError(f"data.classes: cannot read {str(path)!r} ({type(error).__name__}); valid: a list of "
                          f"names, or the path of a UTF-8 text file with one class name per line") from None
    names = [line.strip() for line in lines]
    while names and not names[-1]:
        names.pop()
    if not names:
        raise ConfigError(f"data.classes: {str(path)!r} holds no class names; valid: one class name per line")
    for number, name in enumerate(names, start=1):
        if not name:
            raise ConfigError(f"data.classes: line {number} of {str(path)!r} is empty; valid: one class name per "
                              f"line (the line number is the index + 1)")
    return names


def _listing(names: Sequence[str], where: str) -> str:
    shown = ", ".join(names[:8])
    return f"{shown}{', ...' if len(names) > 8 else ''} ({len(names)} names in {where})"
