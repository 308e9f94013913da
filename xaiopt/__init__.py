"""xaiopt: hyperparameter optimization of rule-based explanations (LRP) for CNNs.

Optuna studies search canonization, the first-layer rule and a rule (with its gamma/epsilon) per
layer group; every trial is scored by a vector of explanation-quality metrics; the Pareto front
lives in an Optuna RDB storage.

Example::

    import xaiopt
    cfg = xaiopt.load_config("studies/quickstart.yaml")
    xaiopt.create_study(cfg, storage="sqlite:///xaiopt.db")
    loaded = xaiopt.optimize(cfg.name, storage="sqlite:///xaiopt.db", n_trials=5)
    print(xaiopt.pareto_rows(loaded))

From Python objects (your own ``nn.Module`` and tensors), without a YAML file (docs/api.md)::

    cfg = xaiopt.study_config(name="mine", model=my_net, data=(x, y, masks), metrics=["sparseness"],
                              sampler="random", n_trials=10)
    loaded = xaiopt.run_study(cfg, storage="sqlite:///mine.db", device="cpu")
    front = xaiopt.pareto_front(loaded)      # settings, values, .composite(model) for zennit
"""

__version__ = "0.1.0"

from xaiopt.config import StudyConfig, load_config, parse_config  # noqa: E402
from xaiopt.errors import XaioptError  # noqa: E402


def __getattr__(name: str):
    # the heavy parts (torch, zennit, optuna) load on first use so `xaiopt --help` stays fast
    lazy = {
        "create_study": "xaiopt.study", "load_study": "xaiopt.study", "optimize": "xaiopt.study",
        "pareto_rows": "xaiopt.study", "ExplainerSpec": "xaiopt.space", "SearchSpace": "xaiopt.space",
        "Objective": "xaiopt.objective", "canonize": "xaiopt.canonize", "get_metric": "xaiopt.metrics",
        "recommend": "xaiopt.analysis", "Recommendation": "xaiopt.analysis",
        "load_composite": "xaiopt.space.exported", "load_explainer": "xaiopt.lrp.exported",
        "study_config": "xaiopt.api", "run_study": "xaiopt.api", "pareto_front": "xaiopt.api",
        "ParetoTrial": "xaiopt.api", "register_objective": "xaiopt.api", "CustomObjective": "xaiopt.api",
        "register_model": "xaiopt.zoo.registered", "register_dataset": "xaiopt.zoo.registered",
        "eval_data": "xaiopt.zoo.registered", "register_metric": "xaiopt.metrics",
        "EvalData": "xaiopt.zoo.evaldata",
    }
    if name in lazy:
        import importlib
        return getattr(importlib.import_module(lazy[name]), name)
    raise AttributeError(f"module 'xaiopt' has no attribute {name!r}")


__all__ = [
    "StudyConfig", "XaioptError", "__version__", "canonize", "create_study", "get_metric", "load_config",
    "load_study", "optimize", "pareto_rows", "parse_config", "ExplainerSpec", "SearchSpace", "Objective",
    "Recommendation", "recommend", "load_composite", "load_explainer", "study_config", "run_study", "pareto_front",
    "ParetoTrial", "register_objective", "CustomObjective", "register_model", "register_dataset", "eval_data",
    "register_metric", "EvalData",
]
