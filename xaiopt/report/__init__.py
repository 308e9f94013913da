"""Reports: plotly figures of a study, the heatmap gallery, the HTML report, optuna-dashboard notes.

Example::

    from xaiopt.report import pareto_figure, write_report
    pareto_figure(loaded).show()
    write_report(loaded, "report/")            # report/index.html, opens offline
"""

from typing import TYPE_CHECKING

from xaiopt.lazy import lazy_exports

if TYPE_CHECKING:
    from xaiopt.report.canonization import canonization_figure, canonization_pairs
    from xaiopt.report.dashboard import publish
    from xaiopt.report.gallery import heatmap_gallery
    from xaiopt.report.importance import importance_figure, param_importances
    from xaiopt.report.page import write_report
    from xaiopt.report.pareto_plot import parallel_figure, pareto_figure, write_pareto_html
    from xaiopt.report.profile import radar_figure
    from xaiopt.report.progress import hypervolume_figure
    from xaiopt.report.timing import timing_figure

# the names load their module on first use (:mod:`xaiopt.lazy`): `study plot` needs plotly, not torch
_MODULES = {
    "xaiopt.report.canonization": ("canonization_figure", "canonization_pairs"),
    "xaiopt.report.dashboard": ("publish",),
    "xaiopt.report.gallery": ("heatmap_gallery",),
    "xaiopt.report.importance": ("importance_figure", "param_importances"),
    "xaiopt.report.page": ("write_report",),
    "xaiopt.report.pareto_plot": ("parallel_figure", "pareto_figure", "write_pareto_html"),
    "xaiopt.report.profile": ("radar_figure",),
    "xaiopt.report.progress": ("hypervolume_figure",),
    "xaiopt.report.timing": ("timing_figure",),
}
__getattr__, __dir__ = lazy_exports(__name__, {n: m for m, names in _MODULES.items() for n in names})

__all__ = [
    "canonization_figure", "canonization_pairs", "heatmap_gallery", "hypervolume_figure", "importance_figure",
    "parallel_figure", "param_importances", "pareto_figure", "publish", "radar_figure", "timing_figure",
    "write_pareto_html", "write_report",
]
