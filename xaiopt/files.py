"""Files written whole or not at all.

Every file xaiopt writes for a reader (reports, Pareto plots, heatmap PNGs, exported composites,
weight and grid caches, the schema docs) goes through :func:`write_atomic`: the bytes go to a
temporary file of a unique name beside the target, which is then renamed over it. A reader never
sees half a file, two writers of one path never share a temporary file (the last rename wins,
whole), and a write that fails (a full disk, a removed directory) leaves neither the temporary
file nor a truncated target behind.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path


def _umask() -> int:
    """The process's umask, read without changing it where the OS allows.

    ``os.umask`` can only be read by setting it; two threads doing that at once can leave the
    process with the wrong mask, so Linux's ``/proc/self/status`` is read first.
    """
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def write_atomic(path: str | Path, data: str | bytes, *, mode: int | None = None, durable: bool = False) -> Path:
    """Write ``data`` (text as UTF-8) to ``path`` atomically and return the path.

    ``mode``: the file's permission bits (default: what ``open()`` would give under the process's
    umask; ``mkstemp`` alone would make it private); ``durable``: fsync the data before the rename,
    for caches whose loss would cost a recomputation after a power cut.
    """
    path = Path(path)
    payload = data.encode("utf-8") if isinstance(data, str) else data
    fd, tmp = tempfile.mkstemp(dir=path.resolve().parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(payload)
            if durable:
                f.flush()
                os.fsync(f.fileno())
        os.chmod(tmp, (0o666 & ~_umask()) if mode is None else mode)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path
