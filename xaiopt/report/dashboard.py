"""optuna-dashboard on an xaiopt storage, with the heatmap artifacts the workers wrote.

Each study records where its workers put artifacts (user attr ``xaiopt:artifact_dir``).
optuna-dashboard takes one artifact store for the whole storage, so :class:`StudyArtifactStore`
reads from every study's directory. Settings come from an optuna-dashboard TOML file
(``dashboards/optuna-dashboard.toml``: section ``[optuna_dashboard]``, keys ``host``, ``port``,
``quiet``, ``artifact_dir``), overridden by the command line.

:func:`publish` puts a study's recommendation where the dashboard shows it: the study's note
(markdown, after whatever a person wrote there; optuna-dashboard shows it on the study's Note page)
and the Pareto figure as a plotly graph of the study (a half-width card, 450 px high, on the
study's History page, the first of the study's pages; so the figure is laid out for that card:
``pareto_figure(..., compact=True)``); a second call replaces both.

Example::

    serve(storage="postgresql+psycopg://xaiopt@db/xaiopt", host="127.0.0.1", port=8080)
    publish(loaded)            # the recommendation in the study's note, the front as a graph
"""

from __future__ import annotations

import json
import logging
import tomllib
from pathlib import Path
from typing import Any, BinaryIO

import optuna
from optuna.artifacts import FileSystemArtifactStore
from optuna.artifacts.exceptions import ArtifactNotFound

from xaiopt.errors import ConfigError, StudyError
from xaiopt.study.manage import ARTIFACTS_ATTR
from xaiopt.study.storage import _redact, default_storage_url, open_storage

log = logging.getLogger(__name__)

DEFAULT_CONFIG = Path(__file__).resolve().parents[2] / "dashboards" / "optuna-dashboard.toml"
DEFAULTS: dict[str, Any] = {"host": "127.0.0.1", "port": 8080, "quiet": False, "artifact_dir": None}


class StudyArtifactStore:
    """Reads artifacts from every study's own directory; writes (uploads from the UI) to the first."""

    def __init__(self, dirs: list[Path]):
        self.stores = [FileSystemArtifactStore(str(d)) for d in dirs]

    def open_reader(self, artifact_id: str) -> BinaryIO:
        for store in self.stores:
            try:
                return store.open_reader(artifact_id)
            except ArtifactNotFound:
                continue
        raise ArtifactNotFound(f"artifact {artifact_id} is in none of {len(self.stores)} artifact directories")

    def write(self, artifact_id: str, content_body: BinaryIO) -> None:
        if not self.stores:
            raise ArtifactNotFound("no artifact directory is configured")
        self.stores[0].write(artifact_id, content_body)

    def remove(self, artifact_id: str) -> None:
        for store in self.stores:
            try:
                store.remove(artifact_id)
                return
            except ArtifactNotFound:
                continue
        raise ArtifactNotFound(f"artifact {artifact_id} not found")


def _is_port(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= 65535


# what each key of [optuna_dashboard] must be, as the words of an error message and a check
_PORT = "an integer from 0 to 65535 (0 picks a free port)"
_KEYS: dict[str, tuple[str, Any]] = {
    "host": ("a host name or address (a non-empty string)", lambda v: isinstance(v, str) and v and "\0" not in v),
    "port": (_PORT, _is_port),
    "quiet": ("true or false", lambda v: isinstance(v, bool)),
    "artifact_dir": ("a directory path (a non-empty string)", lambda v: isinstance(v, str) and v and "\0" not in v),
    "storage": ("a database URL (a non-empty string)", lambda v: isinstance(v, str) and v.strip()),
}
# optuna-dashboard's own keys: accepted so its TOML file works here too, not used by xaiopt
_IGNORED = {"server", "storage_class", "allow_unsafe"}


def _toml(value: Any) -> str:
    """A parsed TOML value written as TOML again, so the message shows what the file says."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, list):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k} = {_toml(v)}" for k, v in value.items()) + "}"
    return value.isoformat() if hasattr(value, "isoformat") else repr(value)


def _shown(value: Any) -> str:
    """A TOML value as the error message shows it: as TOML (cut short), with its type."""
    kinds = {bool: "a boolean", int: "an integer", float: "a float", str: "a string", list: "an array",
             dict: "a table"}
    text = _toml(value)
    text = text if len(text) <= 40 else text[:37] + "..."
    return f"{text} ({kinds.get(type(value), 'a date or time')})"


def _read_toml(p: Path) -> dict[str, Any]:
    try:
        data = p.read_bytes()
    except IsADirectoryError:
        raise ConfigError(f"--config: {p}: is a directory (give an optuna-dashboard TOML file)") from None
    except OSError as err:
        raise ConfigError(f"--config: {p}: cannot be read: {err.strerror or err}") from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as err:
        raise ConfigError(f"--config: {p}: not a UTF-8 text file (byte {data[err.start]:#04x} at offset "
                          f"{err.start}; give an optuna-dashboard TOML file)") from None
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as err:
        raise ConfigError(f"--config: {p}: not valid TOML: {err}") from None


def load_settings(path: str | Path | None) -> dict[str, Any]:
    """Dashboard settings from the TOML file (the packaged one when ``path`` is None and it exists).

    Every key is checked here, so a wrong value is one :class:`ConfigError` naming the key, the value
    and what is valid, before anything opens a storage or a socket.
    """
    p = Path(path) if path is not None else DEFAULT_CONFIG
    if not p.exists():
        if path is not None:
            raise ConfigError(f"--config: {p}: no such file (give an optuna-dashboard TOML file)")
        return dict(DEFAULTS)
    if not p.is_file() and not p.is_dir():
        raise ConfigError(f"--config: {p}: not a regular file (give an optuna-dashboard TOML file)")
    section = _read_toml(p).get("optuna_dashboard", {})
    if not isinstance(section, dict):
        raise ConfigError(f"--config: {p}: optuna_dashboard = {_shown(section)}: "
                          f"give a [optuna_dashboard] table (keys: {', '.join(_KEYS)})")
    unknown = sorted(set(section) - set(_KEYS) - _IGNORED)
    if unknown:
        raise ConfigError(f"--config: {p}: unknown key {unknown[0]!r} in [optuna_dashboard] "
                          f"(valid: {', '.join(_KEYS)})")
    for key, value in section.items():
        if key in _KEYS and not _KEYS[key][1](value):
            raise ConfigError(f"--config: {p}: [optuna_dashboard] {key} = {_shown(value)}: "
                              f"give {_KEYS[key][0]}")
    return {**DEFAULTS, **{k: v for k, v in section.items() if k in _KEYS}}


def artifact_dirs(rdb) -> list[Path]:
    """Every study's artifact directory (each once, in study order)."""
    dirs: dict[Path, None] = {}
    for s in optuna.get_all_study_summaries(rdb, include_best_trial=False):
        d = s.user_attrs.get(ARTIFACTS_ATTR)
        if d:
            dirs[Path(d)] = None
    return list(dirs)


def build_app(storage: str | None = None, *, artifact_dir: str | Path | None = None):
    """The WSGI app (for gunicorn & co.) and the storage URL it serves."""
    from optuna_dashboard import wsgi

    url = storage or default_storage_url()
    rdb = open_storage(url, must_exist=True)
    dirs = artifact_dirs(rdb)
    if artifact_dir is not None:
        dirs.insert(0, Path(artifact_dir))
    return wsgi(rdb, artifact_store=StudyArtifactStore(dirs)), url


def serve(storage: str | None = None, *, host: str | None = None, port: int | None = None,
          config: str | Path | None = None) -> None:
    """Serve optuna-dashboard until interrupted; localhost unless ``host`` says otherwise."""
    from wsgiref.simple_server import WSGIRequestHandler, make_server

    settings = load_settings(config)
    if port is not None and not _is_port(port):
        raise ConfigError(f"--port: {port}: give {_PORT}")
    host = host or settings["host"]
    port = port if port is not None else settings["port"]
    app, url = build_app(storage or settings.get("storage"), artifact_dir=settings["artifact_dir"])
    quiet = bool(settings["quiet"])

    class _Handler(WSGIRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 (wsgiref's name)
            if not quiet:
                super().log_message(format, *args)

    try:
        server = make_server(host, port, app, handler_class=_Handler)
    except OSError as err:
        raise StudyError(f"dashboard: cannot listen on {host}:{port}: {err.strerror or err}") from None
    print(f"optuna-dashboard for {_redact(url)} at http://{host}:{server.server_port}/dashboard "
          f"(Ctrl-C stops it)", flush=True)
    try:
        server.serve_forever()
    finally:
        server.server_close()


NOTE_HEAD = "## xaiopt recommendation"
NOTE_FOOT = "_Written by `xaiopt study report`; running it again replaces this part of the note and the Pareto figure._"
PARETO_GRAPH_ID = "xaiopt-pareto-front"


def note_markdown(rec) -> str:
    """The recommendation as the study's optuna-dashboard note (markdown)."""
    from xaiopt.report.page import recommendation_parts

    paragraph, rule = recommendation_parts(rec)
    arrows = {"maximize": "↑", "minimize": "↓"}
    head = "| | trial | score | " + " | ".join(f"{m} {arrows[d]}" for m, d in rec.directions.items()) + " |"
    lines = [f"{NOTE_HEAD} for {rec.study}", "", paragraph, "", f"_{rule}_", "", head,
             "|" + "---|" * (3 + len(rec.directions))]
    rows = [("recommended", rec.best)]
    if rec.compromise is not None and rec.compromise.number != rec.best.number:
        rows.append(("compromise", rec.compromise))
    rows += [(f"rank {s.rank}", s) for s in rec.top[1:]]
    for role, s in rows:
        lines.append(f"| {role} | {s.number} | {s.score:.3f} | " + " | ".join(f"{v:.4g}" for v in s.values.values())
                     + " |")
    lines += ["", f"Recommended settings: `{rec.best.label}`", "",
              f"The Pareto front is the graph `{PARETO_GRAPH_ID}` on the study's History page.", "", NOTE_FOOT]
    return "\n".join(lines)


def _without_block(note: str) -> str:
    """The study's note less an earlier xaiopt block (what a person wrote there stays)."""
    start = note.find(NOTE_HEAD)
    end = note.find(NOTE_FOOT, start) if start >= 0 else -1
    if start < 0 or end < 0:
        return note
    return (note[:start] + note[end + len(NOTE_FOOT):]).strip()


def publish(loaded, rec=None) -> None:
    """Show the recommendation in optuna-dashboard: in the study's note (markdown, after whatever a
    person wrote there; the study's Note page) and the Pareto figure as a dashboard plotly graph (a
    half-width card of the study's History page, hence the figure's compact layout). Idempotent: a second
    call replaces the xaiopt part of the note and the graph, never appends.

    Example::

        publish(loaded, rec=recommend(loaded))
    """
    from optuna_dashboard import get_note, save_note, save_plotly_graph_object

    from xaiopt.analysis import recommend
    from xaiopt.report.pareto_plot import pareto_figure

    rec = rec if rec is not None else recommend(loaded)
    kept = _without_block(get_note(loaded.study) or "")
    block = note_markdown(rec)
    save_note(loaded.study, f"{kept}\n\n{block}" if kept else block)
    save_plotly_graph_object(loaded.study, pareto_figure(loaded, rec=rec, compact=True),
                             graph_object_id=PARETO_GRAPH_ID)
