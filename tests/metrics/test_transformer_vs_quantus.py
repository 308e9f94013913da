"""The metric vector of benchmarks/metrics_vs_quantus_vit.py on a transformer, as a worker computes it (xaiopt's
CP-LRP engine, MetricContext), equals Quantus 0.6 with LXT 2.1 as its ``explain_func`` (LXT's torchvision CP-LRP
patches and zennit's stock rules through LXT's zennit bridge), in float64, on a small torchvision ViT with random
weights and masks written here.

Aligned, as in the other metric tests: Quantus's random-logit class draw is put into xaiopt's per-worker cache,
xaiopt's sensitivity noise is replayed into Quantus; xaiopt runs random logit with ``ssim_flat`` and relevance mass
accuracy with ``positive: false`` (Quantus's definitions, docs/metrics.md). Quantus's PyTorchModel feeds the model
``torch.Tensor(x)``, always float32: its copy of the model casts its input back to float64, and the images are
float32 numbers, so that round trip (and the one of the black baseline, a per-image minimum) is exact.

The attributions agree to 1e-15. The metric values agree to float32 rounding, not further: xaiopt's metrics
post-process the attributions in float32 (``xaiopt.metrics.normalise.prepare``) and return float32 scores
(``MetricInfo.__call__``; the per-sample scores are stored as float32), by design; Quantus stays in float64.
Measured: at most 4e-8 of the largest value per metric; the test allows 1e-6.
"""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
import zennit.core

pytest.importorskip("lxt")
pytest.importorskip("quantus")

from benchmarks.metrics_vs_quantus_vit import (  # noqa: E402
    aligned_cache,
    differences,
    quantus_trial,
    region_settings,
    vit_spec,
    vit_vector,
    xaiopt_values,
)
from tests.lrp.lxt_reference import relative_error, small_vit  # noqa: E402
from xaiopt.lrp import shared_cache  # noqa: E402
from xaiopt.objective import explainer_for  # noqa: E402
from xaiopt.space import resolve_groups  # noqa: E402

N, SIZE, CLASSES = 4, 32, 10
# max |xaiopt - Quantus| / max |Quantus| per metric: float32 scores (see the module docstring)
TOLERANCE = 1e-6
LXT_PATCHED = (torch.nn.GELU, torch.nn.LayerNorm, torch.nn.MultiheadAttention, zennit.core.BasicHook)


def _as_float64(module, args):
    return (args[0].double(),)


@pytest.fixture(scope="module")
def vit_batch():
    model = small_vit(seed=5, image_size=SIZE, patch_size=8, num_layers=2, num_heads=4, hidden_dim=32, mlp_dim=64,
                      num_classes=CLASSES)
    g = torch.Generator().manual_seed(0)
    x = torch.randn(N, 3, SIZE, SIZE, generator=g).double()  # float32 numbers: exact through float32
    y = torch.tensor([0, 3, 5, 8])
    masks = torch.zeros(N, 1, SIZE, SIZE, dtype=torch.bool)
    for i in range(N):  # a different rectangle per image
        masks[i, :, 4 * i: 4 * i + 12, 20 - 5 * i: 30 - 5 * i] = True
    return model, x, y, masks


def test_metric_vector_equals_quantus_with_lxt(vit_batch):
    model, x, y, masks = vit_batch
    layers = resolve_groups(model, x[:1], 2)
    assert list(layers.groups) == ["blocks1", "blocks2", "head"]
    spec = vit_spec(layers)
    rp = region_settings(SIZE)
    assert rp == {"patch_size": 2, "regions": 50}
    plan = vit_vector(rp)
    with torch.no_grad():
        logits = model(x)
    cache, noise = aligned_cache(x, y, CLASSES, plan)
    quantus_model = copy.deepcopy(model)
    quantus_model.register_forward_pre_hook(_as_float64)
    before = {cls: dict(vars(cls)) for cls in LXT_PATCHED}

    theirs = quantus_trial(quantus_model, spec, layers, x, y, masks, plan, {}, noise=noise)

    assert {cls: dict(vars(cls)) for cls in LXT_PATCHED} == before  # LXT's patches undone
    budget = shared_cache().budget_mb
    try:
        # the worker's first trial records the forwards, the second runs on the kept ones
        runs = [xaiopt_values(model, layers, spec, x, y, masks, logits, cache, 64, plan, {}, 64.0) for _ in "12"]
        with explainer_for(spec, model, layers, low=None, high=None, batch_budget=64) as explain:
            ours_a = explain(x, y)
    finally:
        shared_cache(budget)
    assert relative_error(ours_a, torch.as_tensor(theirs["attribution"])) < 1e-12
    for ours in runs:
        diff = differences(ours, theirs, plan)
        assert all(np.isfinite(v).all() for v in ours.values())
        bad = {name: d for name, d in diff.items() if not d[1] <= TOLERANCE}
        assert not bad, bad
    # the scores are not degenerate: they vary over the images
    assert all(np.ptp(runs[0][name]) > 1e-3 for name, *_ in plan), runs[0]
