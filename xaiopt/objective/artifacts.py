"""Uploading a trial's artifact so that a failed write leaves nothing behind.

Optuna's ``upload_artifact`` records the artifact in the trial's system attrs first and writes the
file second, so a disk that is full, read-only or gone leaves an entry that optuna-dashboard lists
and cannot open. Here the file is written first and recorded only once it is in the store, in the
record Optuna itself reads (``optuna.artifacts.ArtifactMeta`` under the ``artifacts:`` prefix, which
``optuna.artifacts.get_all_artifact_meta`` and optuna-dashboard list).

Example::

    artifact_id = upload_png(store, trial, path)   # raises OSError, recording nothing, when the disk refuses
"""

from __future__ import annotations

import json
import uuid
from dataclasses import asdict
from pathlib import Path

import optuna
from optuna.artifacts import ArtifactMeta

# the key prefix optuna.artifacts records artifacts under (optuna/artifacts/_upload.py)
ARTIFACTS_PREFIX = "artifacts:"


def upload_png(store, trial: optuna.Trial, path: Path) -> str:
    """Write ``path`` into ``store`` as a new artifact of ``trial``; record it only once written."""
    artifact_id = str(uuid.uuid4())
    with open(path, "rb") as f:
        store.write(artifact_id, f)
    meta = ArtifactMeta(artifact_id=artifact_id, filename=path.name, mimetype="image/png", encoding=None)
    trial.storage.set_trial_system_attr(trial._trial_id, ARTIFACTS_PREFIX + artifact_id, json.dumps(asdict(meta)))
    return artifact_id
