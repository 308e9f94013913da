import pytest
import torch

from xaiopt.errors import ConfigError, UnknownNameError
from xaiopt.metrics import MetricInfo, get_metric, metric_names

from .conftest import PER_SAMPLE, assert_close, make_ctx

EXPECTED = {
    "sparseness": ("complexity", "maximize", False),
    "complexity": ("complexity", "minimize", False),
    "region_perturbation": ("faithfulness", "maximize", False),
    "pixel_flipping": ("faithfulness", "minimize", False),
    "faithfulness_correlation": ("faithfulness", "maximize", False),
    "relevance_rank_accuracy": ("localization", "maximize", True),
    "relevance_mass_accuracy": ("localization", "maximize", True),
    "pointing_game": ("localization", "maximize", True),
    "avg_sensitivity": ("robustness", "minimize", False),
    "max_sensitivity": ("robustness", "minimize", False),
    "random_logit": ("randomization", "minimize", False),
    "mprt": ("randomization", "minimize", False),
}


def test_names_and_declarations():
    assert set(EXPECTED) <= set(metric_names())
    for name, (category, direction, needs_masks) in EXPECTED.items():
        info = get_metric(name)
        assert isinstance(info, MetricInfo)
        assert (info.name, info.category, info.direction, info.needs_masks) == (name, category, direction, needs_masks)
        assert info.validate_params({}) == info.defaults


def test_every_metric_runs_with_defaults():
    ctx = make_ctx(n=4)
    for name in EXPECTED:
        params = {"nr_samples": 2} if "sensitivity" in name else {}
        scores = get_metric(name)(ctx, **params)
        assert scores.shape == (4,) and scores.dtype == torch.float32
        assert torch.isfinite(scores).all(), name


def test_unknown_metric():
    with pytest.raises(UnknownNameError, match="sparseness") as e:
        get_metric("sparsness")
    assert "\n" not in str(e.value)


def test_bad_params():
    info = get_metric("region_perturbation")
    with pytest.raises(ConfigError, match=r"region_perturbation.*'patch'.*valid parameters: .*patch_size"):
        info.validate_params({"patch": 4})
    with pytest.raises(ConfigError, match="'patch_size' = '4' must be an int"):
        info.validate_params({"patch_size": "4"})
    with pytest.raises(ConfigError, match="'patch_size' = 0 must be an int > 0"):
        info.validate_params({"patch_size": 0})
    with pytest.raises(ConfigError, match="'order'.*one of 'morf', 'lerf'"):
        info.validate_params({"order": "random"})
    with pytest.raises(ConfigError, match="'abs' = 1 must be a bool"):
        info.validate_params({"abs": 1})
    assert info.validate_params({"uniform_high": 2})["uniform_high"] == 2.0  # ints are numbers
    with pytest.raises(ConfigError, match="patch"):
        info(make_ctx(n=2), patch=3)


def test_masks_required():
    ctx = make_ctx(n=2)
    ctx.masks = None
    with pytest.raises(ConfigError, match="relevance_mass_accuracy.*masks"):
        get_metric("relevance_mass_accuracy")(ctx)


def test_quantus_adapter_agrees():
    ctx = make_ctx()
    info = get_metric("quantus:Sparseness")
    assert (info.category, info.direction, info.needs_masks) == ("complexity", "maximize", False)
    theirs = info(ctx, **PER_SAMPLE)
    assert_close(theirs, get_metric("sparseness")(ctx))
    rma = get_metric("quantus:RelevanceMassAccuracy")
    assert rma.needs_masks and rma.direction == "maximize"
    assert_close(rma(ctx, **PER_SAMPLE), get_metric("relevance_mass_accuracy")(ctx, positive=False))


def test_quantus_adapter_explains_through_ctx():
    ctx = make_ctx(n=4)
    scores = get_metric("quantus:RandomLogit")(ctx, num_classes=5)
    assert scores.shape == (4,) and torch.isfinite(scores).all()


def test_quantus_adapter_errors():
    with pytest.raises(UnknownNameError, match="quantus:Sparseness"):
        get_metric("quantus:Sparsity")
    info = get_metric("quantus:Sparseness")
    with pytest.raises(ConfigError, match="quantus:Sparseness.*'patch_size'"):
        info.validate_params({"patch_size": 3})
    with pytest.raises(ConfigError, match="direction"):
        info.validate_params({"direction": "up"})
    assert info.direction_for({"direction": "minimize"}) == "minimize"
