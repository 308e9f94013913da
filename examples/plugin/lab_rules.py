"""A lab's plugin: one LRP rule with a parameter, a search dimension of every study that lists this module.

``lab_alphabeta`` is zennit's alpha-beta rule with ``beta = alpha - 1`` (so the positive and negative
contributions of a layer keep summing to its relevance) and ``alpha`` searched. Listed in a study
YAML as ``plugins: [lab_rules]`` (the folder of this file on ``PYTHONPATH`` on every machine), the
rule is a valid name in ``space.rules`` and in a group's ``rules``, and its parameter takes values
from ``space.params.alpha`` (a list or ``{low, high, log}``), like gamma and epsilon do::

    plugins: [lab_rules]
    space:
      rules: [epsilon, gamma, lab_alphabeta]
      params: {alpha: [1.5, 2, 3]}

xaiopt's own LRP engine has no implementation of a plugin rule, so trials that use it run the zennit
composite (the same attributions, slower). The exports carry it: the JSON document names this module
under ``plugins`` (import it before ``xaiopt.load_composite``), the Python export imports
``LabAlphaBeta`` from it.
"""

from zennit.rules import AlphaBeta

from xaiopt.space import register_rule


class LabAlphaBeta(AlphaBeta):
    """Alpha-beta LRP with ``beta = alpha - 1``: one parameter, ``alpha >= 1``."""

    def __init__(self, alpha: float = 2.0, stabilizer: float = 1e-6, zero_params=None):
        if alpha < 1.0:
            raise ValueError(f"lab_alphabeta needs alpha >= 1 (beta = alpha - 1 >= 0), got {alpha}")
        super().__init__(alpha=float(alpha), beta=float(alpha) - 1.0, stabilizer=stabilizer, zero_params=zero_params)


register_rule("lab_alphabeta", param="alpha", code="LabAlphaBeta(alpha={param!r})")(LabAlphaBeta)
