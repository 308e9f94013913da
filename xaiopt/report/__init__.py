"""Reports: plotly figures of a study, the heatmap gallery, the HTML report, optuna-dashboard notes.

Example::

    from xaiopt.report import pareto_figure, write_report
    pareto_figure(loaded).show()
    write_report(loaded, "report/")            # report/index.html, opens offline
"""

from xaiopt.report.canonization import canonization_figure, canonization_pairs
from xaiopt.report.dashboard import publish
from xaiopt.report.gallery import heatmap_gallery
from xaiopt.report.importance import importance_figure, param_importances
from xaiopt.report.page import write_report
from xaiopt.report.pareto_plot import parallel_figure, pareto_figure, write_pareto_html
from xaiopt.report.profile import radar_figure
from xaiopt.report.progress import hypervolume_figure
from xaiopt.report.timing import timing_figure

__all__ = [
    "canonization_figure", "canonization_pairs", "heatmap_gallery", "hypervolume_figure", "importance_figure",
    "parallel_figure", "param_importances", "pareto_figure", "publish", "radar_figure", "timing_figure",
    "write_pareto_html", "write_report",
]
