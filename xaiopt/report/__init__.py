"""Reports: plotly figures of the Pareto front, heatmaps, HTML."""

from xaiopt.report.pareto_plot import parallel_figure, pareto_figure, write_pareto_html

__all__ = ["parallel_figure", "pareto_figure", "write_pareto_html"]
