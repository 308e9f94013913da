"""The ``xaiopt`` command: parses, delegates, prints. A user's mistake is one line and exit 2."""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import shlex
import signal
import sys
import threading
from typing import Sequence

from xaiopt import interrupt
from xaiopt.errors import ConfigError, XaioptError
from xaiopt.files import check_out_dir, check_out_file

EXIT_USER_ERROR = 2


def one_line(text: str) -> str:
    """``text`` with every line break and control character shown escaped (a user's file name or study
    name may hold them): an error is always exactly one line."""
    return "".join(ch if ch.isprintable() or ch == " " else ascii(ch)[1:-1] for ch in text)


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # one line, not usage + message
        self.exit(EXIT_USER_ERROR, f"xaiopt: error: {one_line(message)} (see `{self.prog} --help`)\n")


def _threads(p: argparse.ArgumentParser) -> None:
    p.add_argument("--threads", type=int, metavar="N",
                   help="CPU threads for torch in this process (default: torch's own; with several workers "
                        "on one machine give each cores/workers, see docs/scaling.md)")


def _no_progress(p: argparse.ArgumentParser) -> None:
    p.add_argument("--no-progress", action="store_true",
                   help="no progress lines on stderr (set-up steps; a status line per trial on a terminal, "
                        "one line per finished trial otherwise)")


def _progress(args: argparse.Namespace):
    """The progress lines of a run on stderr, unless --no-progress."""
    from contextlib import nullcontext

    from xaiopt.objective.progress import progress_to

    return nullcontext() if args.no_progress else progress_to(sys.stderr)


def _prefer(p: argparse.ArgumentParser) -> None:
    p.add_argument("--prefer", action="append", default=[], metavar="CATEGORY=W[,CATEGORY=W...]",
                   help="category weights of the recommendation (complexity, faithfulness, localization, robustness, "
                        "randomization, axiomatic); unnamed categories weigh 1; repeatable")


def _method(p: argparse.ArgumentParser) -> None:
    p.add_argument("--method", default="score", choices=["score", "rank"],
                   help="score: min-max normalized metrics, category means, weighted mean (default); rank: "
                        "standardized ranks, category medians, weighted median (robust to metrics that disagree)")


def _device(p: argparse.ArgumentParser) -> None:
    p.add_argument("--device", help="auto, cpu, cuda or cuda:N (default: the config's)")


def _storage(p: argparse.ArgumentParser) -> None:
    p.add_argument("--storage", help="database URL (default: $XAIOPT_STORAGE or sqlite:///xaiopt.db); "
                   "$XAIOPT_STORAGE_RETRY_SECONDS bounds the wait for an unreachable database server")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="xaiopt", description="Hyperparameter optimization of LRP explanations.")
    parser.add_argument("-v", "--verbose", action="store_true", help="log every trial")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    run = sub.add_parser("run", help="create a study from CONFIG, optimize it and print its Pareto front")
    run.add_argument("config")
    run.add_argument("--name")
    _storage(run)
    run.add_argument("--n-trials", type=int)
    run.add_argument("--device")
    run.add_argument("--resume", action="store_true", help="continue the study if it exists")
    run.add_argument("--plot", metavar="FILE.html", help="also write the Pareto figure")
    run.add_argument("--dry-run", action="store_true",
                     help="check CONFIG against its model and data and measure one trial's cost; write nothing")
    _no_progress(run)
    _threads(run)

    study = sub.add_parser("study", help="create, optimize, inspect studies")
    ss = study.add_subparsers(dest="action", required=True, parser_class=_Parser)
    c = ss.add_parser("create", help="validate CONFIG and create the study")
    c.add_argument("config")
    c.add_argument("--name")
    _storage(c)
    c.add_argument("--artifacts", metavar="DIR", help="where heatmap artifacts go (default: beside the SQLite file)")
    c.add_argument("--n-trials", type=int, help="the study's total trial budget, shared by all workers "
                   "(overrides the config's n_trials)")
    c.add_argument("--baseline", action="append", default=[], metavar="NAME",
                   help="enqueue a named baseline explainer once (epsilon_plus, epsilon_plus_flat, alpha2beta1, "
                        "epsilon_gamma_box, excitation_backprop; NAME:canonized or NAME:plain for one variant); "
                        "repeatable")
    c.add_argument("--dry-run", action="store_true",
                   help="check CONFIG against its model and data and measure one trial's cost; write nothing")
    c.add_argument("--per-class", nargs="?", const="", default=None, metavar="CLASS[,CLASS...]",
                   help="one study NAME.CLASS per class of the evaluation samples (or per listed class), "
                        "sharing the config; compare them with `xaiopt study compare NAME`")
    cmp_ = ss.add_parser("compare", help="per-class studies' recommended settings against the all-class one, on "
                         "each class's held-out samples")
    cmp_.add_argument("name", help="the all-class study")
    _prefer(cmp_)
    _device(cmp_)
    cmp_.add_argument("--format", default="text", choices=["text", "json"])
    _storage(cmp_)
    _threads(cmp_)
    o = ss.add_parser("optimize", help="run trials of a study in this process")
    o.add_argument("name")
    o.add_argument("--n-trials", type=int)
    _storage(o)
    _device(o)
    o.add_argument("--timeout", type=float, help="stop starting trials after this many seconds")
    _no_progress(o)
    _threads(o)
    p = ss.add_parser("pareto", help="print the Pareto-optimal trials")
    p.add_argument("name")
    p.add_argument("--format", default="table", choices=["table", "json", "csv"])
    p.add_argument("--metrics", metavar="NAME,NAME", help="the front on these metrics only (default: all the "
                   "study's); the table shows them first")
    p.add_argument("--columns", metavar="NAME,NAME", help="the table's metric columns (default: as many as fit "
                   "the terminal, $COLUMNS)")
    _storage(p)
    rc = ss.add_parser("recommend", help="the recommended setting, how sure it is (paired bootstrap), the "
                       "front's compromise")
    rc.add_argument("name")
    _prefer(rc)
    rc.add_argument("--top", type=int, default=3, help="how many settings to list (default 3)")
    _method(rc)
    rc.add_argument("--format", default="text", choices=["text", "json"])
    _storage(rc)
    tb = ss.add_parser("table", help="the paper's canonization table: rows model x method, columns metric x "
                       "canonized (no / yes), the best of each column marked; several studies (one per model) in one")
    tb.add_argument("names", nargs="+", metavar="NAME")
    tb.add_argument("--format", default="text", choices=["text", "markdown", "csv", "latex", "json"])
    _storage(tb)
    va = ss.add_parser("validate", help="score the recommended, compromise, top front and baseline settings on the "
                       "held-out samples (data.holdout): optimism, paired bootstrap, rank agreement, does it hold")
    va.add_argument("name")
    va.add_argument("--top", type=int, default=3, metavar="K", help="how many of the front's best settings to "
                    "validate besides the recommended, compromise and baselines (default 3)")
    _prefer(va)
    _device(va)
    va.add_argument("--format", default="text", choices=["text", "json"])
    _storage(va)
    _threads(va)
    rp = ss.add_parser("report", help="write a self-contained HTML report (recommendation, front, radar, "
                       "hypervolume, importance, canonization effect, heatmaps, timings) into DIR")
    rp.add_argument("name")
    rp.add_argument("--out", required=True, metavar="DIR", help="directory for index.html (created if missing)")
    _prefer(rp)
    _method(rp)
    rp.add_argument("--images", type=int, default=4, metavar="K",
                    help="evaluation images in the heatmap gallery (default 4; 0 leaves the gallery out)")
    rp.add_argument("--device", help="where the gallery's attributions are computed (default: the config's)")
    _storage(rp)
    _threads(rp)
    _no_progress(rp)
    pl = ss.add_parser("plot", help="write an interactive plotly Pareto figure")
    pl.add_argument("name")
    pl.add_argument("--out", required=True, metavar="FILE.html")
    _storage(pl)
    ex = ss.add_parser("export", help="write the recommended (or a chosen) trial's explainer: a Python module "
                       "(a zennit composite; an LXT module for a torchvision ViT), or JSON for "
                       "xaiopt.load_composite / xaiopt.load_explainer")
    ex.add_argument("name")
    which = ex.add_mutually_exclusive_group()
    which.add_argument("--trial", type=int, help="trial number")
    which.add_argument("--recommended", action="store_true",
                       help="the recommended setting of `study recommend` (the default when no --trial is given)")
    _prefer(ex)
    ex.add_argument("--format", default=None, choices=["python", "json"],
                    help="python (a module with make_composite()) or json (default: from --out's suffix)")
    ex.add_argument("--out", required=True, metavar="FILE.py|FILE.json")
    _storage(ex)
    ls = ss.add_parser("list", help="list the studies in a storage")
    ls.add_argument("--format", default="table", choices=["table", "json"])
    _storage(ls)
    d = ss.add_parser("delete", help="delete a study and its trials")
    d.add_argument("name")
    _storage(d)

    w = sub.add_parser("worker", help="join a study as a stateless worker and run its trials")
    _storage(w)
    w.add_argument("--study", required=True, metavar="NAME")
    _device(w)
    wn = w.add_mutually_exclusive_group()
    wn.add_argument("--n-trials", type=int, metavar="K", help="run at most K trials here")
    wn.add_argument("--until-done", action="store_true",
                    help="stay until the study's budget is complete, waiting for other workers' trials "
                         "(the default when the study has a budget)")
    w.add_argument("--timeout", type=float, help="stop starting trials after this many seconds")
    _no_progress(w)
    _threads(w)

    dash = sub.add_parser("dashboard", help="serve optuna-dashboard on a storage, with the heatmap artifacts")
    _storage(dash)
    dash.add_argument("--host", help="interface to bind (default: the TOML's, 127.0.0.1)")
    dash.add_argument("--port", type=int, help="port (default: the TOML's, 8080)")
    dash.add_argument("--config", metavar="FILE.toml",
                      help="optuna-dashboard TOML settings (default: dashboards/optuna-dashboard.toml)")

    can = sub.add_parser("canonize", help="canonization tools")
    cs = can.add_subparsers(dest="action", required=True, parser_class=_Parser)
    chk = cs.add_parser("check", help="canonize MODEL and verify that it computes the same function")
    chk.add_argument("model", help="torchvision:NAME, module:PKG.MOD:CALLABLE or benchmark:NAME")
    chk.add_argument("--input-size", type=int, default=None, help="square input side (default: 64 benchmark, 224)")
    chk.add_argument("--tol", type=float, default=1e-5, help="largest relative logit difference allowed")
    return parser


def _cmd_run(args: argparse.Namespace) -> int:
    from xaiopt.config import load_config
    from xaiopt.errors import StudyExistsError
    from xaiopt.objective.progress import step
    from xaiopt.study import create_study, load_study, optimize

    _check_name_option(args)
    if args.plot:  # before anything is written: a run must not end in a study and no figure
        check_out_file(args.plot, flag="--plot", suffixes=_HTML)
    with _progress(args):
        cfg = load_config(args.config)
        if args.dry_run:
            return _dry_run(cfg, args, args.config)
        name = cfg.name if args.name is None else args.name
        storage = args.storage
        left = args.n_trials  # trials this run still owes
        try:
            created = create_study(cfg, name=name, storage=storage)
            step("preflight passed: %s checked against its model and data", args.config)
            storage = storage or created.storage_url
            print(f"created study {name!r} in {_redact(storage)}", file=sys.stderr)
            _print_evaluation(created, sys.stderr)
            # the first trial measures the cost of the rest (it counts: the budget is the study's)
            if _print_cost(name, storage, created.config.n_trials or args.n_trials, args.device) and left:
                left -= 1
        except StudyExistsError as err:
            if not args.resume:
                raise StudyExistsError(f"{err}; or continue it with `xaiopt run {args.config} --resume`") from None
        if left == 0:
            loaded = load_study(name, storage=storage)
        else:
            loaded = optimize(name, storage=storage, n_trials=left, device=args.device,
                              progress=not args.no_progress)
    _print_pareto(loaded, "table")
    if args.plot:
        _plot(loaded, args.plot, flag="--plot")
    _publish(loaded)
    return 0


_HTML = (".html", ".htm")


def _check_name_option(args: argparse.Namespace) -> None:
    if args.name is not None and not args.name.strip():
        raise ConfigError(f"--name: a study name must not be empty or blank, got {args.name!r} (give a name, "
                          f"or leave --name out to use the config's)")


def _publish(loaded) -> None:
    """The recommendation into the study's optuna-dashboard note (and the Pareto graph), after a run."""
    import optuna

    from xaiopt.report import publish

    if not loaded.study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,)):
        return
    publish(loaded)
    print(f"xaiopt: recommendation written to the study's note in optuna-dashboard "
          f"(`xaiopt study recommend {shlex.quote(loaded.study.study_name)}`, `xaiopt study report "
          f"{shlex.quote(loaded.study.study_name)} --out DIR`)", file=sys.stderr)


def _print_evaluation(loaded, out) -> None:
    _print_facts(loaded.study.user_attrs, loaded.config.n_trials, out)


def _print_facts(attrs, n_trials, out) -> None:
    """What the preflight found and the cost probe measured (a study's user attrs, or a plan's facts)."""
    from xaiopt.study.estimate import COST_ATTR, describe_cost
    from xaiopt.study.manage import CANON_ATTR, EVAL_ATTR, describe_canonization, describe_evaluation
    from xaiopt.study.metric_choice import METRIC_CHOICE_ATTR

    choice = attrs.get(METRIC_CHOICE_ATTR)
    if choice:
        print(f"xaiopt: {choice}", file=sys.stderr)
    canonization = describe_canonization(attrs.get(CANON_ATTR))
    if canonization is not None:
        print(f"xaiopt: {canonization}", file=sys.stderr)
    summary = attrs.get(EVAL_ATTR)
    if summary is not None:
        # the accuracy of the batch against its targets: at chance, the study explains the wrong classes
        line, warning = describe_evaluation(summary)
        print(line, file=out)
        if warning is not None:
            print(f"xaiopt: {warning}", file=sys.stderr)
    cost = describe_cost(attrs.get(COST_ATTR), n_trials)
    if cost is not None:
        print(f"xaiopt: {cost}", file=sys.stderr)


def _print_cost(name: str, storage: str, n_trials: int | None, device: str | None) -> bool:
    """Run the study's first trial and print what it cost and what the budget will (True if it ran)."""
    from xaiopt.study.estimate import describe_cost, measure_first_trial

    cost = measure_first_trial(name, storage=storage, device=device)
    line = describe_cost(cost, n_trials)
    if line is not None:
        print(f"xaiopt: {line}", file=sys.stderr)
    return cost is not None


def _dry_run(cfg, args, config_path: str) -> int:
    """Check and measure as `study create` would, print it, write nothing."""
    from xaiopt.study.manage import plan_study

    plan = plan_study(cfg, name=args.name, storage=args.storage, n_trials=getattr(args, "n_trials", None),
                      baselines=getattr(args, "baseline", ()), probe=True)
    print(f"dry run: {config_path} checked against its model and data; nothing was written "
          f"(metrics: {', '.join(m.name for m in plan.config.metrics)})", file=sys.stderr)
    _print_facts(plan.facts, plan.config.n_trials, sys.stderr)
    return 0


def _names(text: str | None, flag: str) -> list[str] | None:
    """A comma list of metric names (``a,b``); None when the option was not given."""
    if text is None:
        return None
    names = [n.strip() for n in text.split(",") if n.strip()]
    if not names:
        raise ConfigError(f"{flag}: give metric names separated by commas, got {text!r}")
    return names


def _print_pareto(loaded, fmt: str, *, metrics: list[str] | None = None, columns: list[str] | None = None) -> None:
    from xaiopt.study import render

    print(render(loaded, fmt, metrics=metrics, columns=columns))


def _plot(loaded, out: str, *, flag: str = "--out") -> None:
    from xaiopt.report import write_pareto_html

    check_out_file(out, flag=flag, suffixes=_HTML)
    path = write_pareto_html(loaded, out)
    print(f"wrote {path}", file=sys.stderr)


def _cmd_study(args: argparse.Namespace) -> int:
    from xaiopt import study as st

    if args.action == "create":
        from xaiopt.config import load_config

        _check_name_option(args)
        cfg = load_config(args.config)
        if args.dry_run:
            return _dry_run(cfg, args, args.config)
        if args.per_class is not None:
            from xaiopt.study.per_class import create_per_class

            wanted = [c.strip() for c in args.per_class.split(",") if c.strip()] or None
            made = create_per_class(cfg, classes=wanted, name=args.name, storage=args.storage,
                                    artifact_dir=args.artifacts, n_trials=args.n_trials, baselines=args.baseline)
            base = args.name or cfg.name
            print(f"created {len(made)} per-class studies in {_redact(made[0].storage_url)}: "
                  f"{', '.join(m.study.study_name for m in made)}")
            print(f"optimize each (`xaiopt study optimize {shlex.quote(made[0].study.study_name)}` ...), "
                  f"then compare them with the all-class study: `xaiopt study compare {shlex.quote(base)}`")
            return 0
        loaded = st.create_study(cfg, name=args.name, storage=args.storage, artifact_dir=args.artifacts,
                                 n_trials=args.n_trials, baselines=args.baseline)
        queued = [t.user_attrs["baseline"] for t in loaded.study.get_trials(deepcopy=False)
                  if "baseline" in t.user_attrs]
        budget = f", budget {loaded.config.n_trials} trials" if loaded.config.n_trials else ""
        extra = f", baselines: {', '.join(queued)}" if queued else ""
        print(f"created study {loaded.study.study_name!r} in {_redact(loaded.storage_url)} "
              f"(metrics: {', '.join(loaded.metric_names)}{budget}{extra})")
        _print_evaluation(loaded, sys.stdout)
        _print_cost(loaded.study.study_name, loaded.storage_url, loaded.config.n_trials, None)
    elif args.action == "optimize":
        with _progress(args):
            loaded = st.optimize(args.name, storage=args.storage, n_trials=args.n_trials, device=args.device,
                                 progress=not args.no_progress, timeout=args.timeout)
        counts: dict[str, int] = {}
        for t in loaded.study.get_trials(deepcopy=False):
            counts[t.state.name.lower()] = counts.get(t.state.name.lower(), 0) + 1
        print(f"study {args.name!r}: " + ", ".join(f"{v} {k}" for k, v in sorted(counts.items())), file=sys.stderr)
    elif args.action == "pareto":
        _print_pareto(st.load_study(args.name, storage=args.storage), args.format,
                      metrics=_names(args.metrics, "--metrics"), columns=_names(args.columns, "--columns"))
    elif args.action == "recommend":
        from xaiopt.analysis import recommend

        rec = recommend(st.load_study(args.name, storage=args.storage), prefer=args.prefer, top=args.top,
                        method=args.method)
        print(rec.to_json() if args.format == "json" else rec.text())
    elif args.action == "compare":
        from xaiopt.analysis.compare import compare_per_class

        result = compare_per_class(st.load_study(args.name, storage=args.storage), prefer=args.prefer,
                                   device=args.device)
        print(result.to_json() if args.format == "json" else result.text())
    elif args.action == "table":
        from xaiopt.analysis.table import paper_table

        table = paper_table([st.load_study(n, storage=args.storage) for n in dict.fromkeys(args.names)])
        print(table.to_json() if args.format == "json" else table.render(args.format))
    elif args.action == "validate":
        from xaiopt.analysis.validate import validate

        v = validate(st.load_study(args.name, storage=args.storage), top=args.top, prefer=args.prefer,
                     device=args.device)
        print(v.to_json() if args.format == "json" else v.text())
    elif args.action == "report":
        from xaiopt.report import write_report

        if args.images < 0:
            raise ConfigError(f"--images must be >= 0, got {args.images}")
        check_out_dir(args.out, flag="--out", holds="index.html")
        with _progress(args):
            path = write_report(st.load_study(args.name, storage=args.storage), args.out, prefer=args.prefer,
                                images=args.images, device=args.device, method=args.method)
        print(f"wrote {path}", file=sys.stderr)
    elif args.action == "plot":
        check_out_file(args.out, flag="--out", suffixes=_HTML)
        _plot(st.load_study(args.name, storage=args.storage), args.out)
    elif args.action == "export":
        _export(args)
    elif args.action == "list":
        rows = st.list_studies(storage=args.storage)
        if args.format == "json":
            print(json.dumps(rows, indent=2))
        elif not rows:
            print("(no studies)")
        else:
            for r in rows:
                trials = ", ".join(f"{v} {k.lower()}" for k, v in sorted(r["trials"].items())) or "no trials"
                print(f"{r['name']}\t{trials}\tmetrics: {', '.join(r['metrics'] or [])}")
    elif args.action == "delete":
        st.delete_study(args.name, storage=args.storage)
        print(f"deleted study {args.name!r}")
    return 0


def _export(args: argparse.Namespace) -> None:
    from xaiopt import study as st
    from xaiopt.study.export import export_composite

    check_out_file(args.out, flag="--out")  # its suffix is export_composite's to judge
    loaded = st.load_study(args.name, storage=args.storage)
    number, why = args.trial, f"trial {args.trial}, as asked"
    if number is None:
        from xaiopt.analysis import recommend

        rec = recommend(loaded, prefer=args.prefer, top=1)
        number = rec.best.number
        kind = f"baseline {rec.best.baseline}, " if rec.best.baseline else ""
        why = f"trial {number} ({kind}the recommended setting: rank 1 of {rec.settings} by {_weights(rec.weights)})"
    elif args.prefer:
        raise ConfigError("--prefer chooses the recommended setting; it has no meaning with --trial")
    path = export_composite(loaded, trial=number, out=args.out, fmt=args.format)
    print(f"wrote {path}: {why}", file=sys.stderr)


def _weights(weights: dict[str, float]) -> str:
    if len(set(weights.values())) <= 1:
        return "equal category weights"
    return "weights " + ", ".join(f"{c}={w:g}" for c, w in weights.items())


def _cmd_worker(args: argparse.Namespace) -> int:
    from xaiopt.study.worker import run_worker

    with _progress(args):
        result = run_worker(args.study, storage=args.storage, n_trials=args.n_trials, until_done=args.until_done,
                            device=args.device, progress=not args.no_progress, timeout=args.timeout)
    s = result.status
    budget = result.loaded.config.n_trials
    print(f"worker done: {result.ran} trial(s) here; study {args.study!r}: {s.complete} complete, {s.failed} failed, "
          f"{s.running} running, {s.waiting} waiting" + (f" of a budget of {budget}" if budget else ""),
          file=sys.stderr)
    return 0


def _cmd_dashboard(args: argparse.Namespace) -> int:
    from xaiopt.report.dashboard import serve

    serve(args.storage, host=args.host, port=args.port, config=args.config)
    return 0


def _redact(url: str) -> str:
    from xaiopt.study.storage import _redact as redact

    return redact(url)


def _cmd_canonize(args: argparse.Namespace) -> int:
    import torch

    from xaiopt.canonize import check
    from xaiopt.zoo import load_model

    model = load_model(args.model)
    size = args.input_size or (64 if args.model.startswith("benchmark:") else 224)
    example = torch.randn(2, 3, size, size)
    report = check(model, example, tol=args.tol)
    print(report)
    # 1 unless the twin is measured to be fully canonized and to compute the same function
    return 0 if report.ok and report.canonized else 1


def _scrub(text: str, args: argparse.Namespace) -> str:
    # belt and braces: whatever raised, a storage password never reaches the terminal
    from xaiopt.study.storage import default_storage_url, scrub

    return scrub(text, getattr(args, "storage", None) or default_storage_url())


class _HeldWhileStopping(logging.Filter):
    """Once a stop is under way, what the stopping code logs (Optuna's report of the interrupted trial
    with the traceback of the KeyboardInterrupt, the worker's re-queue) is held back from the terminal;
    xaiopt's own messages are kept for the command's one line."""

    def __init__(self) -> None:
        super().__init__()
        self.stopping = False
        self.said: list[str] = []

    def filter(self, record: logging.LogRecord) -> bool:
        # the record of a trial that the interrupt failed carries it; the re-queue is logged while handling it
        exc = record.exc_info[1] if record.exc_info else sys.exc_info()[1]
        if isinstance(exc, KeyboardInterrupt):
            self.stopping = True
        if not self.stopping or record.levelno < logging.WARNING:
            return True
        if record.name.split(".")[0] == "xaiopt":
            self.said.append(record.getMessage())
        return False


class _Stop:
    """SIGINT (Ctrl-C) and SIGTERM (``kill``, ``docker stop``) stop a command alike: a KeyboardInterrupt
    that puts the running trial back in the queue (xaiopt/study/worker.py), then one line and exit
    128 + the signal's number (130, 143). Which signal it was is read from the wakeup file descriptor,
    the one record of it that survives whichever Python handler raised the KeyboardInterrupt."""

    def __init__(self) -> None:
        self._pipe: tuple[int, int] | None = None
        self._held = _HeldWhileStopping()
        self._handlers: list[logging.Handler] = []
        self._replaced: dict[int, object] = {}
        if threading.current_thread() is not threading.main_thread():
            return
        r, w = os.pipe()
        try:
            os.set_blocking(r, False)
            os.set_blocking(w, False)
            if signal.set_wakeup_fd(w, warn_on_full_buffer=False) == -1:
                self._pipe = (r, w)
            else:  # an event loop that runs main() listens already: it stays theirs
                signal.set_wakeup_fd(-1)
        except (OSError, ValueError):
            pass
        if self._pipe is None:
            os.close(r)
            os.close(w)
        self._replaced = interrupt.install()

    def hold_logs(self) -> None:
        """Filter the handlers that write to this process's stderr (a log file keeps every record)."""
        for logger in (logging.getLogger(), logging.getLogger("optuna")):
            for h in logger.handlers:
                if getattr(h, "stream", None) in (sys.stderr, sys.__stderr__) and h not in self._handlers:
                    h.addFilter(self._held)
                    self._handlers.append(h)

    def _signal(self) -> int | None:
        if self._pipe is None:
            return None
        got = b""
        with contextlib.suppress(BlockingIOError):
            while chunk := os.read(self._pipe[0], 512):
                got += chunk
        return next((n for n in got if n in (signal.SIGINT, signal.SIGTERM)), None)

    def interrupted(self) -> int:
        signum = self._signal()
        how = f" by {signal.Signals(signum).name}" if signum is not None else ""
        held = "; ".join(dict.fromkeys(self._held.said))
        print(f"xaiopt: interrupted{how}" + (f" ({one_line(held)})" if held else ""), file=sys.stderr)
        return 128 + (signal.SIGINT if signum is None else signum)

    def close(self) -> None:
        for h in self._handlers:
            h.removeFilter(self._held)
        interrupt.restore(self._replaced)
        interrupt.clear()
        if self._pipe is not None:
            signal.set_wakeup_fd(-1)
            for fd in self._pipe:
                os.close(fd)


def main(argv: Sequence[str] | None = None) -> int:
    stop = _Stop()
    try:
        return _main(argv, stop)
    except KeyboardInterrupt:  # a signal is an expected end of any command: one line, no traceback
        return stop.interrupted()
    finally:
        stop.close()


def _main(argv: Sequence[str] | None, stop: _Stop) -> int:
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as exit_:  # --help, or a usage mistake already printed as one line
        return int(exit_.code or 0)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")
    import optuna

    optuna.logging.set_verbosity(optuna.logging.INFO if args.verbose else optuna.logging.WARNING)
    stop.hold_logs()
    try:
        threads = getattr(args, "threads", None)
        if threads is not None:
            if threads < 1:
                raise ConfigError(f"--threads must be >= 1, got {threads}")
            import torch

            torch.set_num_threads(threads)
        if args.command == "run":
            return _cmd_run(args)
        if args.command == "study":
            return _cmd_study(args)
        if args.command == "canonize":
            return _cmd_canonize(args)
        if args.command == "worker":
            return _cmd_worker(args)
        if args.command == "dashboard":
            return _cmd_dashboard(args)
    except XaioptError as err:
        print(f"xaiopt: error: {one_line(_scrub(str(err), args))}", file=sys.stderr)
        # a user's mistake is 2; an outage outlasting the retry time says so with its own code
        return getattr(err, "exit_code", EXIT_USER_ERROR)
    except Exception as err:
        # an outage that surfaced through a library's own error handling is still one line, not a traceback
        from xaiopt.study.resilient import outage_behind

        gone = outage_behind(err)
        if gone is None:
            raise
        print(f"xaiopt: error: {one_line(_scrub(str(gone), args))}", file=sys.stderr)
        return gone.exit_code
    return 0


if __name__ == "__main__":
    sys.exit(main())
