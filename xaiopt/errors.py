"""The one exception family a user's mistake raises.

The CLI catches :class:`XaioptError`, prints its message as one line and exits with status 2.
Anything else is a bug and keeps its traceback.
"""

from __future__ import annotations


class XaioptError(Exception):
    """A mistake the user can fix: the message names the field, the value and what is valid."""


class ConfigError(XaioptError):
    """The study configuration (YAML file or its values) is invalid."""


class UnknownNameError(XaioptError):
    """A name (rule, metric, sampler, model, dataset, ...) that no registry knows."""


class StudyError(XaioptError):
    """A study that exists when it must not, or does not when it must; storage that cannot be opened."""


class StudyExistsError(StudyError):
    """A study of that name is already in the storage (``xaiopt run --resume`` continues it)."""


class TrialFailed(Exception):
    """A trial cannot produce a valid metric vector (NaN/inf, or the model, explainer or a metric raised);
    it fails with its reason, the study goes on."""
