"""A full, read-only or vanished artifact directory fails the heatmap, never the trial."""

from __future__ import annotations

import errno
import logging
import shutil

import optuna
import pytest
from optuna.artifacts import FileSystemArtifactStore
from optuna.trial import TrialState

from xaiopt.config import parse_config
from xaiopt.objective.trial import HEATMAP_ERROR
from xaiopt.study import create_study, optimize

CFG = {
    "name": "disk", "device": "cpu", "data": {"n_samples": 4},
    "space": {"layer_groups": 1, "rules": ["epsilon", "zplus"], "epsilon": [1e-6, 0.1, 1.0], "first_layer": ["zbox"],
              "canonize": [True, False]},
    "metrics": ["sparseness"], "sampler": {"name": "random"}, "runtime": {"heatmaps": 2},
}


def _warnings(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records
            if r.levelno == logging.WARNING and "heatmap artifacts cannot be written" in r.getMessage()]


@pytest.mark.parametrize("code, name", [(errno.ENOSPC, "No space left on device"),
                                        (errno.EROFS, "Read-only file system")])
def test_a_full_or_read_only_disk_fails_the_heatmap_not_the_trial(tmp_path, monkeypatch, caplog, code, name):
    def refuse(self, artifact_id, content_body):
        raise OSError(code, name, str(self._base_path / artifact_id))

    monkeypatch.setattr(FileSystemArtifactStore, "write", refuse)
    storage = f"sqlite:///{tmp_path / 'd.db'}"
    create_study(parse_config(CFG), storage=storage, artifact_dir=tmp_path / "art")
    with caplog.at_level(logging.WARNING):
        optimize("disk", storage=storage, n_trials=3, device="cpu")
    trials = optuna.load_study(study_name="disk", storage=storage).trials
    assert [t.state for t in trials] == [TrialState.COMPLETE] * 3
    assert all(t.values and t.user_attrs[HEATMAP_ERROR].startswith(f"no heatmap artifact: OSError: {name}")
               for t in trials)
    assert not any(k.startswith("artifacts:") for t in trials for k in t.system_attrs)
    assert len(_warnings(caplog)) == 1  # once per worker, not once per trial


def test_an_artifact_directory_removed_mid_study(tmp_path, caplog):
    storage = f"sqlite:///{tmp_path / 'r.db'}"
    art = tmp_path / "art"
    create_study(parse_config(CFG), storage=storage, artifact_dir=art)
    optimize("disk", storage=storage, n_trials=1, device="cpu")
    first = optuna.load_study(study_name="disk", storage=storage).trials[0]
    assert HEATMAP_ERROR not in first.user_attrs and any(p.is_file() for p in art.rglob("*"))
    # the directory goes, and a file takes its name so that nothing can recreate it
    shutil.rmtree(art)
    art.write_text("not a directory")
    with caplog.at_level(logging.WARNING):
        optimize("disk", storage=storage, n_trials=2, device="cpu")
    trials = optuna.load_study(study_name="disk", storage=storage).trials
    assert [t.state for t in trials] == [TrialState.COMPLETE] * 3
    assert all(HEATMAP_ERROR in t.user_attrs for t in trials[1:])
    assert "NotADirectoryError" in trials[1].user_attrs[HEATMAP_ERROR]
    assert len(_warnings(caplog)) == 1
