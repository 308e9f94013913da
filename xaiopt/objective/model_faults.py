"""What a user's model does wrong, said in one line: an output that is not logits, an exception.

A study needs the model to map an ``(N, 3, H, W)`` float batch to ``(N, C)`` float logits with
``C >= 2`` (LRP starts from one logit per explained class; ``random_logit`` and the targets need
other classes to choose from). :func:`check_logits` says in one line what a model returned
instead. :func:`describe_exception` says what a model (or code it calls) raised and where: the
innermost ``forward`` of the model's own modules on the traceback, so a trial that fails records
``RuntimeError: cuda error (in Encoder.forward, my_model.py:41)`` rather than a traceback.

Example::

    check_logits(model(x[:2]), batch=2, model_name="module:my_model:build")
    try:
        logits = model(x)
    except Exception as err:
        reason = describe_exception(err, models=[model])
"""

from __future__ import annotations

import traceback
from collections.abc import Iterable
from contextlib import contextmanager
from pathlib import Path
from types import FrameType
from typing import Any, Iterator

from torch import Tensor, nn

from xaiopt.errors import ConfigError, XaioptError

LOGITS = "(N, C) float logits with C >= 2 classes"
_XAIOPT_DIR = Path(__file__).resolve().parents[1]


def _shape_of(out: Any) -> str:
    if isinstance(out, Tensor):
        return f"a {out.dtype} tensor of shape {tuple(out.shape)}"
    if isinstance(out, (tuple, list)):
        inner = ", ".join(type(o).__name__ if not isinstance(o, Tensor) else f"tensor{tuple(o.shape)}"
                          for o in list(out)[:4])
        return f"a {type(out).__name__} ({inner}{', ...' if len(out) > 4 else ''})"
    if isinstance(out, dict):
        keys = ", ".join(repr(k) for k in list(out)[:4])
        return f"a dict (keys {keys}{', ...' if len(out) > 4 else ''})"
    return f"a {type(out).__name__}"


def check_logits(out: Any, *, batch: int, model_name: str) -> Tensor:
    """``out`` if it is ``(batch, C)`` float logits with ``C >= 2``; else one ConfigError line.

    NaN logits are not refused here: they fail each trial with its reason, as NaN attributions do."""
    problem = None
    hint = ""
    if not isinstance(out, Tensor):
        problem = f"returned {_shape_of(out)}"
        hint = "; return the logits tensor alone (wrap the model to pick it out of a tuple or dict)"
    elif not out.is_floating_point():
        problem = f"returned {_shape_of(out)}"
        hint = "; LRP needs float logits to propagate relevance from"
    elif out.dim() != 2 or out.shape[0] != batch:
        problem = f"returned shape {tuple(out.shape)} for a batch of {batch} images"
        if out.dim() == 1:
            hint = "; a one-score model needs a class axis (e.g. torch.stack([-z, z], 1) for a binary logit z)"
        elif out.dim() > 2:
            hint = "; pool or flatten the spatial map to one score per class"
    elif out.shape[1] < 2:
        problem = f"returned shape {tuple(out.shape)}: one output, no classes to choose among"
        hint = "; give a binary logit z as torch.stack([-z, z], 1)"
    if problem is None:
        return out
    raise ConfigError(f"model {model_name!r} {problem}; required: {LOGITS}{hint}")


def _model_frame(frame: FrameType, modules: set[int], kinds: set[type]) -> nn.Module | None:
    if frame.f_code.co_name != "forward":
        return None
    owner = frame.f_locals.get("self")
    if isinstance(owner, nn.Module) and (id(owner) in modules or type(owner) in kinds):
        return owner
    return None


def model_location(err: BaseException, models: Iterable[nn.Module]) -> str | None:
    """``Class.forward, file.py:LINE`` of the innermost forward of ``models``' modules (or copies of
    them: same classes) that ``err`` passed through, unless xaiopt's own code (a hook, an engine)
    raised it inside that forward; None when the model's code is not where it came from."""
    mods = [m for model in models for m in model.modules()]
    ids, kinds = {id(m) for m in mods}, {type(m) for m in mods}
    frames = list(traceback.walk_tb(err.__traceback__))
    for frame, lineno in reversed(frames):
        owner = _model_frame(frame, ids, kinds)
        if owner is not None:
            return f"{type(owner).__name__}.forward, {Path(frame.f_code.co_filename).name}:{lineno}"
        try:
            Path(frame.f_code.co_filename).resolve().relative_to(_XAIOPT_DIR)
        except ValueError:
            continue  # torch, a library the model calls: look further out
        return None  # raised by xaiopt's own code, not inside the model
    return None


def first_line(err: BaseException, limit: int = 160) -> str:
    """``Type: first line of the message`` (cut to ``limit`` characters)."""
    lines = str(err).strip().splitlines()
    text = f"{type(err).__name__}: {lines[0].strip()}" if lines else type(err).__name__
    return text if len(text) <= limit else text[: limit - 3] + "..."


def describe_exception(err: BaseException, *, models: Iterable[nn.Module]) -> str:
    """``Type: message (in Class.forward, file.py:LINE)``; the innermost frame when no model frame is on
    the traceback."""
    where = model_location(err, models)
    if where is None:
        last = traceback.extract_tb(err.__traceback__)[-1:] if err.__traceback__ is not None else []
        where = f"raised at {Path(last[0].filename).name}:{last[0].lineno}" if last else None
    else:
        where = f"in {where}"
    return first_line(err) + (f" ({where})" if where else "")


@contextmanager
def model_raises_as_config_error(model: nn.Module, model_name: str, doing: str, *,
                                 always: bool = False) -> Iterator[None]:
    """Turn an exception the model's own code raises while ``doing`` something into one ConfigError
    line naming the model; ``always``: any exception (the block only calls the model). xaiopt's own
    errors pass unchanged, and so does anything raised by xaiopt's code rather than the model's."""
    try:
        yield
    except XaioptError:
        raise
    except Exception as err:
        where = model_location(err, [model])
        if where is None and not always:
            raise
        place = f" (in {where})" if where else ""
        raise ConfigError(f"model {model_name!r} raised {first_line(err)}{place} while {doing}; it must run "
                          f"on the evaluation batch and return {LOGITS}") from err
