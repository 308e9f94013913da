"""A user's model that raises or returns no logits: one line, never a traceback or a lost study.

A model that raises during a trial fails that trial with a reason (what, where in the model's code,
during which stage) and one warning line; the worker goes on with the next trial and exits 0, as
for NaN trials. A model that returns something other than ``(N, C)`` float logits, or raises while
the benchmark is built, is a user's mistake: one line, exit 2, nothing written.
"""

from __future__ import annotations

import importlib
import logging
import os
import subprocess
import sys
from pathlib import Path

import optuna
import pytest
import yaml
from optuna.trial import TrialState

from xaiopt.cli import main
from xaiopt.objective import benchmark as benchmark_module

MODULE = "xaiopt_test_faulty_models"
MODELS = '''
import os

import torch
from torch import nn

# when the model raises, once (set by a test in this process, or by the environment of a worker
# process): "attribution" is the first forward that computes gradients of a whole batch, "perturbed"
# the first of more images than the evaluation batch has (a metric's perturbed copies), "always" every call
ARMED = {"when": os.environ.get("XAIOPT_TEST_FAIL_WHEN"), "error": RuntimeError}


def _due(when, x):
    if when == "attribution":
        return x.requires_grad and len(x) > 1
    if when == "perturbed":
        return len(x) > 4
    return when == "always"


def _net(num_classes):
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                         nn.Linear(4, num_classes))


class Flaky(nn.Module):
    def __init__(self, num_classes=4):
        super().__init__()
        self.net = _net(num_classes)

    def forward(self, x):
        when = ARMED["when"]
        if when and _due(when, x):
            if when != "always":
                ARMED["when"] = None
            raise ARMED["error"]("sensor unplugged\\nsecond line of the message")
        return self.net(x)


class Vector(Flaky):
    def forward(self, x):
        return self.net(x)[:, 0]


class Pair(Flaky):
    def forward(self, x):
        return self.net(x), x


class Named(Flaky):
    def forward(self, x):
        return {"logits": self.net(x)}


class Spatial(Flaky):
    def forward(self, x):
        return self.net[0](x)


class Integer(Flaky):
    def forward(self, x):
        return self.net(x).round().long()


class Single(Flaky):
    def forward(self, x):
        return self.net(x)[:, :1]
'''


@pytest.fixture(autouse=True)
def models(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    (tmp_path / f"{MODULE}.py").write_text(MODELS)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.chdir(tmp_path)
    # a benchmark cached by an earlier test holds that test's model object (and its ARMED switch)
    monkeypatch.setattr(benchmark_module, "_CACHE", {})
    monkeypatch.delenv("XAIOPT_TEST_FAIL_WHEN", raising=False)
    monkeypatch.setenv("XAIOPT_NO_ESTIMATE", "1")  # the cost probe would be a model call of its own
    yield sys.modules.get(MODULE)
    sys.modules.pop(MODULE, None)


def armed(when: str, error: type[BaseException] = RuntimeError) -> None:
    module = sys.modules[MODULE]  # imported by the create before
    module.ARMED.update(when=when, error=error)


def config(tmp_path: Path, model: str = "Flaky", metrics: list | None = None) -> Path:
    cfg = {
        "name": "faulty", "device": "cpu",
        "model": {"name": f"module:{MODULE}:{model}", "num_classes": 4},
        "data": {"n_samples": 4, "target": "predicted"},
        "space": {"canonize": [False], "first_layer": ["same"], "layer_groups": 1, "rules": ["epsilon", "zplus"],
                  "epsilon": [1e-6, 0.1]},
        "metrics": metrics or ["sparseness"],
        "sampler": "random",
        # the reference explanations run the model before the first trial: the armed fault is the trial's
        "runtime": {"heatmaps": 0, "references": False},
    }
    path = tmp_path / "faulty.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def said(err: str) -> list[str]:
    """The lines a user reads on stderr, progress lines left out."""
    return [line for line in err.splitlines() if line.strip() and not line.startswith("xaiopt: [")]


def create(tmp_path: Path, capsys, model: str = "Flaky", **kw) -> tuple[int, str, str]:
    code = main(["study", "create", str(config(tmp_path, model, **kw)), "--storage", f"sqlite:///{tmp_path / 's.db'}"])
    out, err = capsys.readouterr()
    return code, out, err


def trials(tmp_path: Path) -> list[optuna.trial.FrozenTrial]:
    return optuna.load_study(study_name="faulty", storage=f"sqlite:///{tmp_path / 's.db'}").trials


def test_a_model_raising_in_a_trial_fails_it_with_a_reason_and_the_worker_goes_on(tmp_path, capsys):
    code, _, err = create(tmp_path, capsys)
    assert code == 0, err
    # a worker process of its own, as `xaiopt study optimize` runs: its real stderr, logging and exit code
    env = {**os.environ, "XAIOPT_TEST_FAIL_WHEN": "attribution",
           "PYTHONPATH": os.pathsep.join([str(tmp_path), os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.run([sys.executable, "-m", "xaiopt", "study", "optimize", "faulty", "--storage",
                           f"sqlite:///{tmp_path / 's.db'}", "--n-trials", "3"], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    done = trials(tmp_path)
    assert [t.state for t in done] == [TrialState.FAIL, TrialState.COMPLETE, TrialState.COMPLETE]
    reason = done[0].user_attrs["fail_reason"]
    assert reason.startswith("RuntimeError: sensor unplugged (in Flaky.forward, xaiopt_test_faulty_models.py:")
    assert reason.endswith(") during attribution") and "second line" not in reason
    lines = said(proc.stderr)
    # the one warning, then the worker's usual last line
    assert lines == [f"WARNING xaiopt.objective.trial: trial 0 failed: {reason}",
                     "study 'faulty': 2 complete, 1 fail"], proc.stderr
    assert "Traceback" not in proc.stderr + proc.stdout


def test_run_goes_on_after_a_model_error_in_a_metric(tmp_path, capsys, caplog):
    seen: list[logging.LogRecord] = []
    handler = logging.Handler()
    handler.emit = seen.append  # type: ignore[method-assign]
    optuna_log = logging.getLogger("optuna")  # its records do not propagate to the root logger
    optuna_log.addHandler(handler)
    path = config(tmp_path, metrics=["sparseness", "pixel_flipping"])
    # create and the trials run in this process: the model is armed before, for a metric's perturbed batch
    importlib.import_module(MODULE).ARMED.update(when="perturbed")
    try:
        with caplog.at_level(logging.WARNING):
            code = main(["run", str(path), "--storage", f"sqlite:///{tmp_path / 's.db'}", "--n-trials", "3"])
    finally:
        optuna_log.removeHandler(handler)
    out, err = capsys.readouterr()
    assert code == 0, err
    done = trials(tmp_path)
    assert [t.state for t in done] == [TrialState.FAIL, TrialState.COMPLETE, TrialState.COMPLETE]
    reason = done[0].user_attrs["fail_reason"]
    assert reason.startswith("RuntimeError: sensor unplugged (in Flaky.forward, ")
    assert reason.endswith(" during metric pixel_flipping")
    warnings = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert warnings == [f"trial 0 failed: {reason}"]
    # Optuna's own report of the failure (a traceback and a second line) is not repeated
    assert not [r for r in seen if "failed" in r.getMessage()]
    assert "Pareto front of study 'faulty'" in out


def test_an_interrupt_inside_the_model_is_no_failed_trial(tmp_path, capsys):
    code, _, err = create(tmp_path, capsys)
    assert code == 0, err
    armed("attribution", KeyboardInterrupt)
    code = main(["study", "optimize", "faulty", "--storage", f"sqlite:///{tmp_path / 's.db'}", "--n-trials", "2"])
    _, err = capsys.readouterr()
    assert code == 130 and said(err)[-1] == "xaiopt: interrupted"
    # re-queued for the next worker, not failed with a reason
    states = [t.state for t in trials(tmp_path)]
    assert TrialState.WAITING in states and TrialState.COMPLETE not in states
    assert not any("fail_reason" in t.user_attrs for t in trials(tmp_path))


def test_a_model_raising_while_the_worker_builds_is_one_line(tmp_path, capsys):
    code, _, err = create(tmp_path, capsys)
    assert code == 0, err
    benchmark_module._CACHE.clear()  # the worker builds its own, as a new process would
    armed("always")
    code = main(["study", "optimize", "faulty", "--storage", f"sqlite:///{tmp_path / 's.db'}", "--n-trials", "2"])
    _, err = capsys.readouterr()
    assert code == 2
    lines = said(err)
    assert len(lines) == 1, err
    assert lines[0].startswith(f"xaiopt: error: model 'module:{MODULE}:Flaky' raised RuntimeError: sensor unplugged "
                               f"(in Flaky.forward, {MODULE}.py:")
    assert trials(tmp_path) == []  # no trial was started


@pytest.mark.parametrize("model, seen", [
    ("Vector", "returned shape (2,) for a batch of 2 images"),
    ("Pair", "returned a tuple (tensor(2, 4), tensor(2, 3, 64, 64))"),
    ("Named", "returned a dict (keys 'logits')"),
    ("Spatial", "returned shape (2, 4, 64, 64) for a batch of 2 images"),
    ("Integer", "returned a torch.int64 tensor of shape (2, 4)"),
    ("Single", "returned shape (2, 1): one output"),
])
def test_an_output_that_is_not_logits_is_one_line_and_no_study(tmp_path, capsys, model, seen):
    code, out, err = create(tmp_path, capsys, model)
    assert code == 2
    lines = said(err)
    assert len(lines) == 1, err
    assert lines[0].startswith(f"xaiopt: error: model 'module:{MODULE}:{model}' {seen}")
    assert "required: (N, C) float logits with C >= 2 classes" in lines[0]
    assert not (tmp_path / "s.db").exists() and out == ""


def test_a_model_raising_on_its_first_call_is_one_line_and_no_study(tmp_path, capsys):
    importlib.import_module(MODULE).ARMED.update(when="always")
    code, out, err = create(tmp_path, capsys)
    assert code == 2
    lines = said(err)
    assert len(lines) == 1 and "raised RuntimeError: sensor unplugged (in Flaky.forward" in lines[0], err
    assert not (tmp_path / "s.db").exists()
