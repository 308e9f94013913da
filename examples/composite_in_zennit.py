"""Using a found setting in plain zennit code, without the study: the JSON export and the Python module.

A small study runs on the embedded benchmark; its recommended setting is exported twice:
``trial.json`` (read by :func:`xaiopt.load_composite`) and ``trial.py`` (a module with
``make_composite()`` that needs only zennit and, for canonized settings, xaiopt's canonizer). Each is
registered on the plain model with zennit's ``Gradient`` attributor, and the attributions are checked
against the ones xaiopt computed for the trial. The model computes its own function again afterwards.

Run: ``python examples/composite_in_zennit.py`` (about 15 s on a laptop CPU).
"""

from __future__ import annotations

import importlib.util
import json
import tempfile
from pathlib import Path

import torch
from zennit.attribution import Gradient

import xaiopt
from xaiopt.study.attribute import attribute_settings
from xaiopt.study.export import export_composite
from xaiopt.zoo import load_dataset, load_model


def zennit_attributions(model: torch.nn.Module, composite, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Plain zennit: relevance of the target logits (seeded with the logit itself), channels summed."""
    with Gradient(model, composite) as attributor:
        _, relevance = attributor(x, lambda out: torch.zeros_like(out).scatter_(1, y.view(-1, 1),
                                                                                 out.gather(1, y.view(-1, 1))))
    return relevance.sum(1, keepdim=True)


def main() -> dict:
    cfg = xaiopt.study_config(name="composite", model="benchmark:vgg", data="benchmark", n_samples=8, n_trials=4,
                              metrics=["sparseness", "relevance_mass_accuracy"], sampler="random",
                              runtime={"heatmaps": 0}, space={"canonize": [True]})
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        loaded = xaiopt.run_study(cfg, storage=f"sqlite:///{tmp / 'c.db'}", device="cpu")
        chosen = xaiopt.recommend(loaded).best.number           # a trial on the front
        trial = next(t for t in xaiopt.pareto_front(loaded) if t.number == chosen)
        trial.export(tmp / "trial.json")
        export_composite(loaded, trial=chosen, out=tmp / "trial.py")

        model = load_model("benchmark:vgg").eval()
        data = load_dataset("benchmark", n=8)
        x, y = data.x, data.y
        with torch.no_grad():
            clean = model(x)
        study_view = attribute_settings(loaded, [trial.settings], images=8, device="cpu").attributions[0]

        from_json = zennit_attributions(model, xaiopt.load_composite(tmp / "trial.json", model), x, y)
        spec = importlib.util.spec_from_file_location("exported_trial", tmp / "trial.py")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        from_module = zennit_attributions(model, module.make_composite(), x, y)
        with torch.no_grad():
            after = model(x)

    assert torch.allclose(from_json, study_view, rtol=1e-4, atol=1e-6), float((from_json - study_view).abs().max())
    assert torch.allclose(from_module, study_view, rtol=1e-4, atol=1e-6), float((from_module - study_view).abs().max())
    assert torch.equal(after, clean)  # the composite (and its canonizer) left the model as it was
    result = {"trial": chosen, "explainer": trial.explainer, "values": trial.values,
              "max_abs_difference": {"json": float((from_json - study_view).abs().max()),
                                     "module": float((from_module - study_view).abs().max())}}
    print(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    main()
