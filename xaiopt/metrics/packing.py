"""Per-sample metric scores packed for storage: one short base64 string of float32 per metric.

A metric returns one float32 score per sample (``MetricInfo.__call__``); the trial's value is the
float64 mean of exactly those numbers. Packing the float32 bytes loses nothing, so the mean of the
unpacked vector is the trial's value again (bit for bit when computed the same way on the CPU).
N = 32 samples take 172 characters per metric.

Example::

    packed = pack_scores({"sparseness": torch.tensor([0.5, 0.25])})
    # {'format': 'f32le-b64', 'scores': {'sparseness': 'AAAAPwAAgD4='}}
    unpack_scores(packed)["sparseness"]        # array([0.5 , 0.25], dtype=float32)
"""

from __future__ import annotations

import base64
import binascii
from typing import Any, Mapping

import numpy as np

FORMAT = "f32le-b64"
_DTYPE = np.dtype("<f4")


def pack_scores(scores: Mapping[str, Any]) -> dict[str, Any]:
    """``{metric: (N,) tensor or array}`` -> a JSON-serialisable dict (float32, little-endian, base64)."""
    out: dict[str, str] = {}
    for name, value in scores.items():
        if hasattr(value, "detach"):  # a torch tensor, possibly on a GPU
            value = value.detach().cpu().numpy()
        arr = np.ascontiguousarray(np.asarray(value).reshape(-1), dtype=_DTYPE)
        out[name] = base64.b64encode(arr.tobytes()).decode("ascii")
    return {"format": FORMAT, "scores": out}


def unpack_scores(packed: Mapping[str, Any]) -> dict[str, np.ndarray]:
    """The inverse of :func:`pack_scores`: ``{metric: (N,) float32 array}``; ValueError if malformed."""
    if not isinstance(packed, Mapping) or packed.get("format") != FORMAT:
        got = packed.get("format") if isinstance(packed, Mapping) else type(packed).__name__
        raise ValueError(f"per-sample scores: unknown format {got!r} (expected {FORMAT!r})")
    out: dict[str, np.ndarray] = {}
    for name, text in packed.get("scores", {}).items():
        try:
            raw = base64.b64decode(text, validate=True)
        except (binascii.Error, TypeError) as err:
            raise ValueError(f"per-sample scores of {name!r}: not base64 ({err})") from None
        if len(raw) % _DTYPE.itemsize:
            raise ValueError(f"per-sample scores of {name!r}: {len(raw)} bytes is not a whole number of float32")
        out[name] = np.frombuffer(raw, dtype=_DTYPE).copy()
    return out
