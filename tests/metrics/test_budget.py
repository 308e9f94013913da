"""No forward pass and no explain call of any metric sees more than ctx.batch_budget images."""

import pytest
import torch
from torch import nn

from xaiopt.metrics import get_metric, metric_names
from xaiopt.metrics.batching import fastest_chunk

from .conftest import make_ctx


class _Recorder(nn.Module):
    def __init__(self, model: nn.Module, seen: list):
        super().__init__()
        self.model, self.seen = model, seen

    def forward(self, x):
        self.seen.append(len(x))
        return self.model(x)


PARAMS = {
    "region_perturbation": {"patch_size": 2},  # 64 patches x 8 samples: enough steps to tune the chunk
    "pixel_flipping": {"features_in_step": 1},
    "faithfulness_correlation": {"nr_runs": 20, "subset_size": 16},
    "avg_sensitivity": {"nr_samples": 20},
    "max_sensitivity": {"nr_samples": 20},
}


@pytest.mark.parametrize("name", metric_names())
@pytest.mark.parametrize("budget", [5, 64])
def test_metric_respects_batch_budget(name, budget):
    ctx = make_ctx(budget=budget)
    seen: list[int] = []
    explained: list[int] = []
    ctx.model = _Recorder(ctx.model, seen)
    plain_explain, plain_with = ctx.explain, ctx.explain_with
    ctx.explain = lambda x, t: (explained.append(len(x)), plain_explain(x, t))[1]
    ctx.explain_with = lambda m, x, t: (explained.append(len(x)), plain_with(m, x, t))[1]
    get_metric(name)(ctx, **PARAMS.get(name, {}))
    assert max(seen + explained, default=0) <= budget
    if get_metric(name).passes != "none":
        assert seen or explained


def test_fastest_chunk_picks_the_fastest_and_caches():
    cache: dict = {}
    calls: list[int] = []

    def run(k):  # per image cost is lowest at 16
        calls.append(k)
        import time
        time.sleep(0.002 * k * (1 if k == 16 else 3))

    assert fastest_chunk(cache, "key", 256, run) == 16
    assert max(calls) <= 256 and max(calls) < 256  # stopped after two slower sizes
    calls.clear()
    assert fastest_chunk(cache, "key", 256, run) == 16 and calls == []
    assert fastest_chunk({}, "key", 3, run) == 3  # budget below the smallest candidate
    torch.manual_seed(0)
