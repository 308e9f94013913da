"""A user's plugin, as a lab would write it: one custom metric registered on import."""


from xaiopt.metrics import register_metric


@register_metric("lab_positive_share", category="localization", direction="maximize", needs_masks=True,
                 passes="none")
def lab_positive_share(ctx, **_):
    """The share of the positive relevance that lies on the object's mask (1 = all of it)."""
    pos = ctx.attributions.clamp(min=0).flatten(1).double()
    inside = (pos * ctx.masks.flatten(1).double()).sum(1)
    return inside / pos.sum(1).clamp(min=1e-12)
