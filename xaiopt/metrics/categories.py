"""The metric categories and directions, without torch: read commands weigh categories with these."""

CATEGORIES = ("complexity", "faithfulness", "localization", "robustness", "randomization", "axiomatic")
DIRECTIONS = ("maximize", "minimize")
