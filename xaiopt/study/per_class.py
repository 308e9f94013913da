"""Per-class studies: one study per class of the evaluation samples, sharing one config.

``xaiopt study create CONFIG --per-class [NAMES]`` makes a study ``NAME.CLASS`` for every class
present among the evaluation samples (or each listed one). Each is the config with
``data.only_class`` set: the same samples, the same seeded split (``data.holdout``), restricted to
that class, so a class study searches on, and holds out, exactly its class's part of the all-class
study's sets. Each study records what it is a part of (``xaiopt:per_class_of``, ``xaiopt:class``);
``xaiopt study compare NAME`` finds them by that record.

Example::

    studies = create_per_class(load_config("studies/quickstart.yaml"), storage="sqlite:///q.db")
    [s.study.study_name for s in studies]   # ['quickstart.circle', 'quickstart.square', ...]
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from pathlib import Path

import optuna
import torch

from xaiopt.config import StudyConfig
from xaiopt.errors import ConfigError, XaioptError
from xaiopt.objective import get_benchmark
from xaiopt.study.manage import LoadedStudy, _refuse_existing, check_study_name, create_study
from xaiopt.study.storage import (
    NewStudyFile,
    default_storage_url,
    open_storage,
    sqlite_lock,
    sqlite_path,
    this_process,
)

PER_CLASS_ATTR = "xaiopt:per_class_of"
CLASS_ATTR = "xaiopt:class"


def present_classes(cfg: StudyConfig) -> list[str]:
    """The names of the classes among the study's search samples, in index order."""
    bench = get_benchmark(cfg, torch.device("cpu"))
    names = bench.class_names
    return [names[c] if c < len(names) else str(c) for c in sorted(set(bench.labels.tolist()))]


def create_per_class(cfg: StudyConfig, *, classes: Sequence[str] | None = None, name: str | None = None,
                     storage: str | None = None, artifact_dir: str | Path | None = None,
                     n_trials: int | None = None, baselines: Sequence[str] = ()) -> list[LoadedStudy]:
    """Create one study per class (``classes``, default every class present); all or none are created."""
    if cfg.data.only_class is not None:
        raise ConfigError("--per-class: the config already sets data.only_class; drop one of the two")
    base = cfg.name if name is None else name
    check_study_name(base)
    present = present_classes(cfg)
    wanted = list(dict.fromkeys(classes)) if classes else present
    unknown = [c for c in wanted if c not in present]
    if unknown:
        raise ConfigError(f"--per-class: {', '.join(unknown)} is not a class of the evaluation samples "
                          f"(valid: {', '.join(present)})")
    url = storage or cfg.storage or default_storage_url()
    names = [f"{base}.{c}" for c in wanted]
    for n in names:  # all or none: a name too long for the storage is refused before the first is made
        check_study_name(n)
    path = sqlite_path(url)
    existed = path is None or path.exists()
    if existed:
        rdb = open_storage(url)
        for n in names:
            _refuse_existing(rdb, n, url)
    made: list[LoadedStudy] = []
    try:
        for cname, study_name in zip(wanted, names):
            one = cfg.model_copy(update={"data": cfg.data.model_copy(update={"only_class": cname})})
            loaded = create_study(one, name=study_name, storage=url, artifact_dir=artifact_dir, n_trials=n_trials,
                                  baselines=baselines)
            loaded.study.set_user_attr(PER_CLASS_ATTR, base)
            loaded.study.set_user_attr(CLASS_ATTR, cname)
            made.append(loaded)
    except BaseException:
        for loaded in made:
            optuna.delete_study(study_name=loaded.study.study_name, storage=loaded.storage_url)
        if not existed:
            _remove_if_empty(url, base)
        raise
    return made


def _remove_if_empty(url: str, base: str) -> None:
    """All or none: the SQLite file the first class's create made goes too, unless it holds a study by now
    (another process's) or someone holds its lock."""
    path = sqlite_path(url)
    if path is None or not path.exists():
        return
    with contextlib.suppress(XaioptError), sqlite_lock(
            url, kind="create", holder=f"`study create --per-class` ({this_process()}, study {base!r})",
            refuse=lambda file, holder: f"{file} is in use by {holder}") as lock:
        NewStudyFile(url, lock, made=True).remove_if_unused(open_storage(url))


def class_studies(base: LoadedStudy) -> list[str]:
    """The names of the per-class studies made for ``base`` in its storage, by class order of creation."""
    rdb = open_storage(base.storage_url, must_exist=True)
    return [s.study_name for s in optuna.get_all_study_summaries(rdb, include_best_trial=False)
            if s.user_attrs.get(PER_CLASS_ATTR) == base.study.study_name]
