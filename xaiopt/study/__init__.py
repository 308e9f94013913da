"""Studies: create/load/optimize, samplers, storage URLs, Pareto queries."""

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

__all__ = [
    "FORMATS", "LoadedStudy", "create_study", "default_storage_url", "delete_study", "list_studies", "load_study",
    "make_sampler", "open_storage", "optimize", "pareto_rows", "per_sample_scores", "preflight", "render",
    "sampler_names",
]
