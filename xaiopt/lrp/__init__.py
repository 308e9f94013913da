"""xaiopt's own LRP engine: the zennit composite of an ExplainerSpec, in one forward and one backward.

Public API::

    explain = LrpExplainer(spec, model, layers, low=low, high=high, batch_budget=64,
                           cache=shared_cache(budget_mb=1024))
    relevance = explain(x, targets)      # equals spec.to_composite(...) under zennit (float64: 1e-10)

See docs/lrp.md for the design, every rule's formula and the forward cache.
"""

from xaiopt.lrp.attention import ATTENTION_RULES, OperationCensus
from xaiopt.lrp.cache import (
    CacheStats,
    ForwardCache,
    input_fingerprint,
    model_fingerprint,
    shared_cache,
)
from xaiopt.lrp.engine import LrpExplainer, operation_census, record, relevance_of
from xaiopt.lrp.mapping import rule_table
from xaiopt.lrp.rules import RULES, LrpRule

__all__ = [
    "ATTENTION_RULES",
    "RULES",
    "OperationCensus",
    "CacheStats",
    "ForwardCache",
    "LrpExplainer",
    "LrpRule",
    "input_fingerprint",
    "model_fingerprint",
    "operation_census",
    "record",
    "relevance_of",
    "rule_table",
    "shared_cache",
]
