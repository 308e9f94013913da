"""Recorded forwards kept across trials: a study's inputs never change, only its rules do.

An entry is one recorded forward (the autograd graph with its relevance nodes, the logits, the
input leaf, the rule-independent quantities the rules derived) for one ``(model, input)`` pair.
The key makes reuse for anything else impossible:

* the model: its object identity (checked through a weak reference, so a recycled ``id`` never
  matches), every parameter's and buffer's storage address, version counter, shape, dtype and
  device, and a float64 checksum of their values (sum and 2-norm per tensor), which catches
  in-place edits that bypass the version counter (``p.data.normal_()``);
* the hooked module set (the canonized twin is another model object anyway);
* the modules whose outputs the entry keeps for relevance at those layers
  (``LrpExplainer.relevance_at``), none for plain attributions;
* the input: shape, dtype, device and a BLAKE2b digest of its bytes.

The cache holds at most ``budget_mb`` (the bytes of the input and output of every hooked call,
every tensor autograd saved in the forward, the kept layer outputs, and the derived quantities). A study cycles through
the same inputs every trial, and least-recently-used eviction would then evict each entry just
before its next use once the cycle outgrows the budget; so a full cache keeps what it has and a new
forward is simply not kept (recomputed next time), except that entries whose model no longer
exists, or that went unused for ``idle_lookups`` lookups, make room. Nothing past the budget is
ever kept, so the cache cannot run the process out of memory.
"""

from __future__ import annotations

import logging
import weakref
from collections import OrderedDict
from dataclasses import dataclass, field

from torch import Tensor, nn

from xaiopt.fingerprint import HitCounts, tensor_fingerprint

# the keys (re-exported: the engine and the tests take them from here)
from xaiopt.fingerprint import model_fingerprint as model_fingerprint
from xaiopt.lrp.recorder import RuleBoard
from xaiopt.lrp.site import Site

logger = logging.getLogger(__name__)

input_fingerprint = tensor_fingerprint  # the key of an input


@dataclass
class Recorded:
    """One recorded forward: differentiate ``out`` to ``inp`` with ``board`` set to a spec's rules.

    ``watched``: module name -> that module's output in the graph, for the relevance there (its bytes
    are in ``base_bytes``).
    """

    inp: Tensor
    out: Tensor
    board: RuleBoard
    sites: list[Site]
    base_bytes: int
    model_ref: weakref.ref | None = None
    kept: bool = False
    watched: dict[str, Tensor] = field(default_factory=dict)

    def nbytes(self) -> int:
        return self.base_bytes + sum(s.nbytes() for s in self.sites)


@dataclass
class CacheStats(HitCounts):
    evictions: int = 0
    too_large: int = 0
    full: int = 0
    trimmed: int = 0  # kept entries that stopped keeping their derived quantities, to hold the budget


@dataclass
class ForwardCache:
    """Store of :class:`Recorded` forwards within ``budget_mb`` megabytes (0: keep nothing)."""

    budget_mb: float = 1024.0
    idle_lookups: int = 2000
    stats: CacheStats = field(default_factory=CacheStats)

    def __post_init__(self) -> None:
        self._entries: OrderedDict[tuple, Recorded] = OrderedDict()
        self._last_use: dict[tuple, int] = {}
        self._clock = 0
        self._told = False

    @property
    def budget_bytes(self) -> int:
        return int(self.budget_mb * 2**20)

    def used_bytes(self) -> int:
        return sum(e.nbytes() for e in self._entries.values())

    def __len__(self) -> int:
        return len(self._entries)

    def lookup(self, key: tuple, model: nn.Module) -> Recorded | None:
        self._clock += 1
        entry = self._entries.get(key)
        if entry is not None and (entry.model_ref is None or entry.model_ref() is not model):
            self._drop(key)
            entry = None
        if entry is None:
            self.stats.misses += 1
        else:
            self._last_use[key] = self._clock
            self.stats.hits += 1
        logger.debug("LRP forward cache %s: %d hits, %d misses (hit rate %.0f%%), %d entries, %.1f MB",
                     "hit" if entry else "miss", self.stats.hits, self.stats.misses, 100 * self.stats.hit_rate,
                     len(self._entries), self.used_bytes() / 2**20)
        return entry

    def admits(self, entry: Recorded) -> bool:
        """Whether an entry of this size could be kept at all (checked before its backward)."""
        fits = self.budget_bytes > 0 and entry.base_bytes <= self.budget_bytes
        if not fits and self.budget_bytes > 0:
            self.stats.too_large += 1
            logger.debug("LRP forward cache: a forward of %.1f MB exceeds the budget of %.1f MB; not kept",
                         entry.base_bytes / 2**20, self.budget_mb)
            self._tell_once(f"LRP forward cache: one recorded forward takes {entry.base_bytes / 2**20:.0f} MB, more "
                            f"than runtime.lrp_cache_mb {self.budget_mb:g}; every explanation runs its forward "
                            f"(a smaller runtime.batch_budget or a larger runtime.lrp_cache_mb would keep them)")
        return fits

    def store(self, key: tuple, entry: Recorded) -> bool:
        """Keep ``entry`` (evicting older ones); ``False`` if it alone exceeds the budget."""
        size = entry.nbytes()
        if size > self.budget_bytes:
            self.stats.too_large += 1
            return False
        self._drop(key)
        if self.used_bytes() + size > self.budget_bytes:
            for old in [k for k, e in self._entries.items()
                        if e.model_ref() is None or self._clock - self._last_use[k] > self.idle_lookups]:
                self._drop(old)
                self.stats.evictions += 1
        if self.used_bytes() + size > self.budget_bytes:
            self.stats.full += 1
            logger.debug("LRP forward cache full (%.1f of %.1f MB): a forward of %.1f MB is not kept",
                         self.used_bytes() / 2**20, self.budget_mb, size / 2**20)
            self._tell_once(
                f"LRP forward cache: runtime.lrp_cache_mb {self.budget_mb:g} is full with {len(self)} recorded "
                f"forwards ({self.used_bytes() / 2**20:.0f} MB); forwards of {size / 2**20:.0f} MB each that do not "
                f"fit are recomputed every trial; a larger runtime.lrp_cache_mb keeps them")
            return False
        self._entries[key] = entry
        self._last_use[key] = self._clock
        entry.kept = True
        return True

    def trim(self, key: tuple) -> None:
        """Hold the budget after a backward on a kept entry: the quantities its rules derived since it was
        stored count too. Over the budget, the entry stops keeping them (its rules compute them each
        time, as for a forward that is not kept); still over it, the entry is dropped."""
        entry = self._entries.get(key)
        if entry is None or self.used_bytes() <= self.budget_bytes:
            return
        for site in entry.sites:
            site.derived = None
        self.stats.trimmed += 1
        if self.used_bytes() > self.budget_bytes:
            self._drop(key)
            self.stats.evictions += 1

    def _tell_once(self, message: str) -> None:
        """One INFO line per cache, the first time forwards are not kept for lack of room."""
        if not self._told:
            self._told = True
            logger.info(message)

    def _drop(self, key: tuple) -> None:
        self._entries.pop(key, None)
        self._last_use.pop(key, None)

    def resize(self, budget_mb: float) -> None:
        """A new budget; a smaller one drops the most recently stored entries first."""
        self.budget_mb = float(budget_mb)
        while self._entries and self.used_bytes() > self.budget_bytes:
            self._drop(next(reversed(self._entries)))
            self.stats.evictions += 1

    def clear(self) -> None:
        self._entries.clear()
        self._last_use.clear()


_SHARED = ForwardCache()


def shared_cache(budget_mb: float | None = None) -> ForwardCache:
    """The process-wide cache (one per worker), resized to ``budget_mb`` when given."""
    if budget_mb is not None and budget_mb != _SHARED.budget_mb:
        _SHARED.resize(budget_mb)
    return _SHARED
