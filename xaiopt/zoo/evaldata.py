"""The evaluation batch handed from the zoo to the objective (see docs/contracts.md)."""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class EvalData:
    """Evaluation samples in the model's input space.

    Attributes:
        x: (N, C, H, W) float32, already normalised.
        y: (N,) int64 labels, indices of the model's classes (see :mod:`xaiopt.zoo.classes`:
            ImageNet wnids map to 0..999, integer names are indices, or ``data.classes``).
        masks: (N, 1, H, W) bool, True on the object that decides the class; or None.
        low: (C,) float32, lowest value a pixel may take in input space (for zbox).
        high: (C,) float32, highest value.
        num_classes: size of the label space (1000 for ImageNet wnids, not the classes present).
        class_names: one name per class, index = label.
        fixed: the model's inputs after the image, one row per sample (a VQA model's questions as word
            indices); empty for a model of the image alone.

    Example:
        >>> from xaiopt.zoo import load_dataset
        >>> data = load_dataset("benchmark", n=8)
        >>> len(data), data.class_names
        (8, ('circle', 'square', 'triangle', 'plus'))
    """

    x: torch.Tensor
    y: torch.Tensor
    masks: torch.Tensor | None
    low: torch.Tensor
    high: torch.Tensor
    num_classes: int
    class_names: tuple[str, ...]
    fixed: tuple[torch.Tensor, ...] = ()

    def __post_init__(self) -> None:
        n, channels = self.x.shape[0], self.x.shape[1]
        if any(f.shape[0] != n for f in self.fixed):
            raise ValueError(f"fixed inputs must have {n} rows, got {[int(f.shape[0]) for f in self.fixed]}")
        if self.y.shape != (n,):
            raise ValueError(f"y must have shape ({n},), got {tuple(self.y.shape)}")
        if self.masks is not None and self.masks.shape != (n, 1, *self.x.shape[2:]):
            raise ValueError(f"masks must have shape ({n}, 1, H, W), got {tuple(self.masks.shape)}")
        if self.low.shape != (channels,) or self.high.shape != (channels,):
            raise ValueError(f"low and high must have shape ({channels},)")
        if len(self.class_names) != self.num_classes:
            raise ValueError(f"class_names must have {self.num_classes} entries, got {len(self.class_names)}")

    def __len__(self) -> int:
        return int(self.x.shape[0])
