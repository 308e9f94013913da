"""The seam the rest of xaiopt uses: ``canonize(model, example_input) -> (twin, report)``."""

from __future__ import annotations

import time
import warnings

import torch
from torch import nn

from .attention import unfuse_attention
from .canonizer import GraphCanonizer
from .census import census
from .changes import Changes
from .copying import copy_model
from .inputs import Example, split
from .norm_fold import fold_norm_affines
from .report import CanonizationReport
from .verify import verify_equivalence


def _measure(report: CanonizationReport, model: nn.Module, twin: nn.Module, example: Example) -> None:
    """Fill the report's counts from running model and twin; a twin that still computes batch
    norms or runs weighted layers outside modules is not canonized, whatever the graph said."""
    before, after = census(model, example), census(twin, example)
    report.batch_norms_before = len(before.batch_norms)
    report.unhooked_before = before.unhooked
    report.remaining_batch_norms = after.batch_norms
    report.unhooked_layers = after.unhooked
    problems = []
    if after.batch_norms:
        problems.append(f"the twin still computes {len(after.batch_norms)} of {len(before.batch_norms)} batch "
                        f"norms (in {_names(after.batch_norms)})")
    if after.unhooked:
        problems.append(f"{len(after.unhooked)} conv/linear calls run outside any Conv/Linear module, where no "
                        f"rule can attach ({_names(after.unhooked)})")
    if problems and report.canonized:
        report.canonized = False
        report.reason = "; ".join(problems) + (f"; {report.reason}" if report.reason else "")


def _names(items: list[str], limit: int = 6) -> str:
    unique = list(dict.fromkeys(items))
    return ", ".join(unique[:limit]) + (f", ... ({len(unique)} places)" if len(unique) > limit else "")


def _example(model: nn.Module, example_input: Example | None) -> Example:
    if example_input is not None:
        split(example_input)  # a TypeError naming what it got, before anything runs
        return example_input
    reference = next(iter(list(model.parameters()) + list(model.buffers())), None)
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(2, 3, 64, 64, generator=generator)  # the shape verify_equivalence defaults to
    return x if reference is None else x.to(reference.device, reference.dtype if reference.is_floating_point()
                                            else x.dtype)


def canonize(
    model: nn.Module,
    example_input: Example | None = None,
    *,
    canonizer: GraphCanonizer | None = None,
    verify: bool = True,
    n_random: int = 2,
    tol: float = 1e-5,
) -> tuple[nn.Module, CanonizationReport]:
    """A canonized deep copy of ``model`` in eval mode, and the report of what was done.

    The model itself is not touched. Batch norms are merged into their linear neighbours, residual
    additions, concatenations and squeeze-excitation gates become explicit modules. The twin is
    checked against the model in float64 on ``example_input`` plus ``n_random`` random batches of
    its shape; if the relative logit difference exceeds ``tol``, or the model cannot be traced, the
    twin is an unchanged copy and a warning names why. Never a silently different function.

    A model with fixed inputs besides the one explained (a VQA model's question) takes
    ``example_input=(x, *fixed)``: every check runs ``model(x, *fixed)`` and varies ``x`` only
    (xaiopt.canonize.inputs).

    Example::

        twin, report = canonize(model, x[:2])
        print(report)
    """
    start = time.perf_counter()
    canonizer = canonizer if canonizer is not None else GraphCanonizer()
    name = type(model).__name__
    twin = copy_model(model).eval()
    try:
        instances = canonizer.apply(twin)
    except Exception as error:  # a rewrite that failed has been undone; the model must still run
        reason = f"canonization of {name} failed ({type(error).__name__}: {str(error).strip()[:300]})"
        warnings.warn(f"xaiopt.canonize: {reason}; the model is used uncanonized", stacklevel=2)
        twin = copy_model(model).eval()
        report = CanonizationReport(name, False, reason)
        _measure(report, model, twin, _example(model, example_input))
        report.seconds = time.perf_counter() - start
        return twin, report

    changes = Changes()
    for instance in instances:
        changes.merges += instance.changes.merges
        changes.rewrites += instance.changes.rewrites
        changes.skipped += instance.changes.skipped
    # attention whose projections no module runs (nn.MultiheadAttention) or one module runs for three
    # roles (a fused qkv Linear): one Linear module per projection
    unfused, kept_fused = unfuse_attention(twin)
    changes.rewrites += unfused
    changes.skipped += kept_fused
    # layer norms' affine parts into the Linear layers that read them (found and checked by running)
    folded, kept_affine = fold_norm_affines(twin, _example(model, example_input), tol=tol)
    changes.merges += folded
    changes.skipped += kept_affine
    rewritten = bool(unfused or folded)
    canonized = any(i.graph is not None for i in instances) or rewritten
    untraced = [s for s in changes.skipped if s.reason.startswith("torch.fx cannot trace")]
    reason = None if instances or rewritten else "model was already canonized"
    if untraced:
        where = ", ".join(s.target or "<model>" for s in untraced)
        done = "canonized its traceable submodules only" if canonized else "the model is used uncanonized"
        reason = f"{untraced[0].reason}; {done} (not traced: {where})"
        warnings.warn(f"xaiopt.canonize: {reason}", stacklevel=2)
    report = CanonizationReport(
        name, canonized or not (instances or rewritten), reason,
        changes.merges, changes.rewrites, changes.skipped,
    )
    if verify:
        try:
            report.equivalence = verify_equivalence(model, twin, example_input, n_random=n_random, tol=tol)
            failure = None if report.equivalence.ok else f"check failed: {report.equivalence}"
        except Exception as error:
            failure = f"check could not run ({type(error).__name__}: {error})"
        if failure:
            warnings.warn(f"xaiopt.canonize: {name} {failure}; the model is used uncanonized", stacklevel=2)
            twin = copy_model(model).eval()
            report.canonized, report.reason = False, failure
    _measure(report, model, twin, _example(model, example_input))
    report.seconds = time.perf_counter() - start
    return twin, report


def check(model: nn.Module, example_input: Example | None = None, *, tol: float = 1e-5) -> CanonizationReport:
    """Canonize a copy of ``model`` and return the report (``print(report)`` for the CLI)."""
    return canonize(model, example_input, tol=tol)[1]
