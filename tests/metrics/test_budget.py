"""No forward pass and no explain call of any metric sees more than ctx.batch_budget images."""

import pytest
from torch import nn

from xaiopt.metrics import get_metric, metric_names
from xaiopt.metrics.batching import chunk_size

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


# xaiopt's own metrics: a metric another test registers (a custom objective in tests/api) hands the
# whole batch to ctx.explain, which in a trial chunks by the budget itself
BUILT_IN = [n for n in metric_names() if get_metric(n).func.__module__.startswith("xaiopt.metrics.")]


@pytest.mark.parametrize("name", BUILT_IN)
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


def test_cpu_chunk_follows_activation_size():
    ctx = make_ctx(budget=10_000)  # tiny CNN: 4 x 16 x 16 floats = 4 KiB largest activation
    assert chunk_size(ctx, 100_000) == 4096
    assert chunk_size(ctx, 10) == 10  # never more than the images asked for
    ctx.batch_budget = 3
    assert chunk_size(ctx, 100) == 3  # never more than the budget
