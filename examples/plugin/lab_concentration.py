"""A lab's plugin: one custom metric, registered when a study config that lists this module is read.

Listed in a study YAML as ``plugins: [lab_concentration]`` (the folder of this file on ``PYTHONPATH``
on every machine), so ``xaiopt study create``, ``xaiopt worker`` and every read command know it.
"""


from xaiopt.metrics import Param, register_metric


@register_metric("lab_concentration", category="complexity", direction="maximize", passes="none",
                 top=Param(0.05, check=lambda v: 0.0 < v <= 1.0, valid="in (0, 1]",
                           doc="share of the pixels counted as the top"))
def lab_concentration(ctx, *, top):
    """Share of each heatmap's positive relevance that lies in its ``top`` share of pixels (1 = all of it)."""
    pos = ctx.attributions.clamp(min=0).flatten(1).double()
    k = max(1, round(top * pos.shape[1]))
    return pos.topk(k, dim=1).values.sum(1) / pos.sum(1).clamp(min=1e-12)
