"""Studies: create/load/optimize, samplers, storage URLs, Pareto queries.

The names below load their module on first use (:mod:`xaiopt.lazy`): reading a study never
imports torch.
"""

from typing import TYPE_CHECKING

from xaiopt.lazy import lazy_exports

if TYPE_CHECKING:
    from xaiopt.study.manage import (
        LoadedStudy,
        create_study,
        delete_study,
        list_studies,
        load_study,
        preflight,
    )
    from xaiopt.study.pareto import FORMATS, pareto_rows, render
    from xaiopt.study.per_sample import per_sample_scores
    from xaiopt.study.run import optimize
    from xaiopt.study.samplers import make_sampler, sampler_names
    from xaiopt.study.storage import default_storage_url, open_storage

_MODULES = {
    "xaiopt.study.manage": ("LoadedStudy", "create_study", "delete_study", "list_studies", "load_study", "preflight"),
    "xaiopt.study.pareto": ("FORMATS", "pareto_rows", "render"),
    "xaiopt.study.per_sample": ("per_sample_scores",),
    "xaiopt.study.run": ("optimize",),
    "xaiopt.study.samplers": ("make_sampler", "sampler_names"),
    "xaiopt.study.storage": ("default_storage_url", "open_storage"),
}
__getattr__, __dir__ = lazy_exports(__name__, {n: m for m, names in _MODULES.items() for n in names})

__all__ = [
    "FORMATS", "LoadedStudy", "create_study", "default_storage_url", "delete_study", "list_studies", "load_study",
    "make_sampler", "open_storage", "optimize", "pareto_rows", "per_sample_scores", "preflight", "render",
    "sampler_names",
]
