"""Reading a study YAML file into a validated :class:`StudyConfig`, with one-line errors."""

from __future__ import annotations

import typing
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from xaiopt.config.plugins import MODULE_NAME, add_study_dir, import_plugins
from xaiopt.config.schema import StudyConfig
from xaiopt.errors import ConfigError

_TAGGED_FIELDS = ("gamma", "epsilon", "layer_groups")
# what a tagged field accepts, for a value of the wrong kind altogether
_FORMS = {
    "gamma": "a list of values or {low, high, log}",
    "epsilon": "a list of values or {low, high, log}",
    "layer_groups": "an integer (automatic groups), a list of {name, modules} or {blocks, sublayers}",
}


def _model_at(root: type[BaseModel], loc: tuple[Any, ...]) -> type[BaseModel] | None:
    """The pydantic model class that owns the field at ``loc`` (to list its valid keys)."""
    current: Any = root
    for part in loc:
        if isinstance(part, int) or current is None:
            continue
        if not (isinstance(current, type) and issubclass(current, BaseModel)):
            return None
        field = current.model_fields.get(part)
        if field is None:
            return current
        current = _first_model(field.annotation)
    return current if isinstance(current, type) and issubclass(current, BaseModel) else None


def _first_model(annotation: Any) -> Any:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in typing.get_args(annotation):
        found = _first_model(arg)
        if found is not None:
            return found
    return None


_TAGS = ("choices", "range", "auto", "explicit", "blocks")


def _tagged(loc: tuple[Any, ...], i: int) -> str | None:
    """The field whose union tag stands at ``loc[i]`` (``gamma``, or ``alpha`` of ``params.alpha``), else None."""
    if loc[i] not in _TAGS or i == 0:
        return None
    if loc[i - 1] in _TAGGED_FIELDS:
        return str(loc[i - 1])
    if i >= 2 and loc[i - 2] == "params":
        return "gamma"  # a plugin rule's parameter takes the forms gamma takes
    return None


def format_validation_error(err: ValidationError, source: str) -> str:
    """Turn pydantic's multi-line report into one line: the first problem, its field and what is valid."""
    e = err.errors()[0]
    # discriminated unions insert their tag after the field name; it is not a key the user wrote
    raw = e["loc"]
    loc = tuple(p for i, p in enumerate(raw) if _tagged(raw, i) is None)
    field = ".".join(str(p) if not isinstance(p, int) else f"[{p}]" for p in loc).replace(".[", "[") or "(top level)"
    if e["type"] == "extra_forbidden":
        owner = _model_at(StudyConfig, loc[:-1])
        valid = ", ".join(owner.model_fields) if owner else "see the documentation"
        msg = f"unknown key {loc[-1]!r} (valid: {valid})"
        field = ".".join(str(p) for p in loc[:-1] if not isinstance(p, int)) or "(top level)"
    elif len(raw) >= 2 and _tagged(raw, len(raw) - 1) is not None and e["type"].endswith("_type"):
        msg = f"expected {_FORMS[str(_tagged(raw, len(raw) - 1))]}, got {e.get('input')!r}"
    else:
        msg = e["msg"]
        if msg.startswith("Value error, "):
            msg = msg[len("Value error, "):]
        # pydantic's type errors do not say what was given; our own value errors already do
        shows_input = e["type"] not in ("value_error", "assertion_error", "missing")
        if shows_input and "input" in e and not isinstance(e["input"], (dict, list)):
            msg = f"{msg}, got {e['input']!r}"
    extra = f" (and {len(err.errors()) - 1} more problem(s))" if len(err.errors()) > 1 else ""
    return f"{source}: {field}: {msg}{extra}"


def parse_config(data: Any, *, source: str = "config") -> StudyConfig:
    """Validate a mapping (as loaded from YAML or JSON) into a :class:`StudyConfig`."""
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: the top level must be a mapping of keys to values, got {type(data).__name__}")
    # what the config names (rules, metrics) may be registered by its plugins: import them before the
    # names are checked; a malformed plugins list is left to the validation, which names the problem
    plugins = data.get("plugins")
    if isinstance(plugins, list) and all(isinstance(n, str) and MODULE_NAME.match(n) for n in plugins):
        import_plugins(list(dict.fromkeys(plugins)), source=source)
    try:
        return StudyConfig.model_validate(data)
    except ValidationError as err:
        raise ConfigError(format_validation_error(err, source)) from None


def load_config(path: str | Path) -> StudyConfig:
    """Read and validate a study YAML file.

    Example::

        cfg = load_config("studies/quickstart.yaml")
        cfg.space.rules   # ['epsilon', 'gamma', ...]
    """
    p = Path(path)
    if p.is_dir():
        raise ConfigError(f"{p}: is a directory (give the path of a study YAML file, e.g. studies/quickstart.yaml)")
    if not p.is_file():
        what = "not a regular file" if p.exists() else "no such file"
        raise ConfigError(f"{p}: {what} (give the path of a study YAML file, e.g. studies/quickstart.yaml)")
    try:
        data = yaml.safe_load(p.read_text(encoding="utf-8"))
    except OSError as err:  # unreadable (permissions), or gone since the check
        raise ConfigError(f"{p}: cannot be read: {err.strerror or err}") from None
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(err, "problem", None) or str(err).splitlines()[0]
        raise ConfigError(f"{p}: not valid YAML{where}: {problem}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{p}: not a UTF-8 text file") from None
    if data is None:  # an empty file is a mistake, never a default study
        raise ConfigError(f"{p}: the file is empty (a study YAML needs at least a name; see studies/quickstart.yaml)")
    add_study_dir(p)  # its plugins and module: models may sit beside it
    return parse_config(data, source=str(p))


def config_to_dict(cfg: StudyConfig) -> dict[str, Any]:
    """JSON-compatible dict of a config (stored in the study's user attrs)."""
    return cfg.model_dump(mode="json")
