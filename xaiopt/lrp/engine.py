"""xaiopt's LRP engine: an ExplainerSpec's relevance in one forward and one backward.

Example::

    from xaiopt.lrp import LrpExplainer, shared_cache
    explain = LrpExplainer(spec, model, layers, low=low, high=high, batch_budget=64,
                           cache=shared_cache(1024))
    relevance = explain(x, targets)          # (N, 1, H, W), the zennit composite's values
    at = explain.relevance_at(x, targets, layers=["features.10"])
    at["features.10"]                        # (N, C, h, w): the relevance at that module's output
"""

from __future__ import annotations

import contextlib
import weakref
from collections.abc import Sequence

import torch
from torch import Tensor, nn

from xaiopt.canonize.layers import gradient_frame
from xaiopt.errors import ConfigError
from xaiopt.lrp.attention import ATTENTION_RULES, OperationCensus, TransformerRules
from xaiopt.lrp.cache import (
    ForwardCache,
    Recorded,
    input_fingerprint,
    model_fingerprint,
)
from xaiopt.lrp.mapping import rule_table, ungrouped_rules
from xaiopt.lrp.recorder import Recorder, RuleBoard, hooked_modules
from xaiopt.space import ExplainerSpec, LayerGroups


def _nbytes(tensors) -> int:
    seen, total = set(), 0
    for t in tensors:
        if t is None:
            continue
        key = (t.untyped_storage().data_ptr(), t.device)
        if key not in seen:
            seen.add(key)
            total += t.untyped_storage().nbytes()
    return total


# the key of the input relevance in what ``relevance_at`` returns
INPUT = "input"


def layer_names(model: nn.Module, layers: Sequence[str], *, what: str = "the model") -> tuple[str, ...]:
    """``layers`` checked as module names of ``model`` (``what`` names it in the one-line error)."""
    if isinstance(layers, str) or not isinstance(layers, Sequence) or not all(isinstance(n, str) for n in layers):
        raise ConfigError(f"relevance_at: layers: expected a list of module names, got {layers!r}")
    names = tuple(dict.fromkeys(layers))
    if not names:
        raise ConfigError("relevance_at: layers: empty list; name at least one module (e.g. 'features.10')")
    modules = dict(model.named_modules())
    for name in names:
        if name == INPUT:
            raise ConfigError(f"relevance_at: layers: {INPUT!r} is the key of the input relevance in the result; "
                              f"it cannot name a module")
        if name not in modules:
            listing = [n for n in modules if n]
            more = f", ... ({len(listing)} in all)" if len(listing) > 12 else ""
            raise ConfigError(f"relevance_at: layers: {name!r} is not a module of {what} "
                              f"(its modules: {', '.join(listing[:12]) or 'none'}{more})")
    return names


def called_once(outputs: dict[str, list], *, what: str = "the model") -> dict[str, Tensor]:
    """Each watched module's one output tensor; :class:`ConfigError` for a module that ran 0 or 2+ times."""
    for name, outs in outputs.items():
        if len(outs) != 1:
            ran = "did not run" if not outs else f"ran {len(outs)} times"
            why = ("the canonization merges batch norms into their layers and runs the modules of containers "
                   "directly" if not outs and "twin" in what else "a shared activation runs once per use")
            raise ConfigError(f"relevance_at: layers: module {name!r} of {what} {ran} in the forward pass; name a "
                              f"module that runs once per forward ({why})")
        if not isinstance(outs[0], Tensor):
            raise ConfigError(f"relevance_at: layers: module {name!r} of {what} returns a "
                              f"{type(outs[0]).__name__}, not one tensor")
    return {name: outs[0] for name, outs in outputs.items()}


def target_seed(out: Tensor, targets: Tensor) -> Tensor:
    """The relevance at the output: each sample's target logit, zero elsewhere."""
    t = targets.view(-1, 1).to(out.device)
    return torch.zeros_like(out).scatter_(1, t, out.gather(1, t).detach())


def relevances(out: Tensor, inp: Tensor, watched: dict[str, Tensor], targets: Tensor, *,
               keep: bool, gradient_frame: bool = False) -> dict[str, Tensor]:
    """The backward of the target logits: relevance at each watched tensor, and at the input (channels
    summed) under :data:`INPUT`. A watched tensor the logits do not depend on gets zeros.

    ``gradient_frame``: the graph was recorded under the transformer rules, where what flows back is
    a gradient; the seed is then the one-hot target (the logit's relevance is the logit times 1) and
    a tensor's relevance is the tensor times its gradient."""
    tensors = list(watched.values())
    if gradient_frame:
        seed = torch.zeros_like(out).scatter_(1, targets.view(-1, 1).to(out.device), 1.0)
    else:
        seed = target_seed(out, targets)
    grads = torch.autograd.grad(out, [inp, *tensors], grad_outputs=seed, retain_graph=keep,
                                allow_unused=bool(tensors))
    if gradient_frame:
        grads = tuple(None if g is None else g * t.detach() for g, t in zip(grads, [inp, *tensors]))
    result = {name: (torch.zeros_like(t) if g is None else g).detach()
              for (name, t), g in zip(watched.items(), grads[1:])}
    result[INPUT] = grads[0].sum(dim=1, keepdim=True).detach()
    return result


def sample_chunks(x: Tensor, targets: Tensor, fixed: tuple[Tensor, ...], budget: int):
    """``(x, targets, fixed)`` in chunks of ``budget`` samples, the fixed inputs (one row per sample of
    ``x``) split with them; ValueError when their rows do not match ``x``'s."""
    if any(f.shape[0] != x.shape[0] for f in fixed):
        raise ValueError(f"fixed inputs need one row per sample of x ({x.shape[0]}), got "
                         f"{[int(f.shape[0]) for f in fixed]}")
    for chunk in zip(x.split(budget), targets.split(budget), *(f.split(budget) for f in fixed)):
        yield chunk[0], chunk[1], tuple(chunk[2:])


def concat_chunks(parts: list[dict[str, Tensor]]) -> dict[str, Tensor]:
    return {key: torch.cat([p[key] for p in parts]) for key in parts[0]}


class _ModuleStack:
    """The names of the modules running now (forward pre/post hooks on every module)."""

    def __init__(self, model: nn.Module) -> None:
        self.names: list[str] = []
        self.root = f"<forward of {type(model).__name__}>"
        self._handles = []
        for name, module in model.named_modules():
            self._handles.append(module.register_forward_pre_hook(self._enter(name)))
            self._handles.append(module.register_forward_hook(self._leave, always_call=True))

    def _enter(self, name: str):
        def hook(module, args) -> None:
            self.names.append(name)
        return hook

    def _leave(self, module, args, output) -> None:
        self.names.pop()

    def innermost(self) -> str:
        return self.names[-1] if self.names and self.names[-1] else self.root

    def remove(self) -> None:
        for h in self._handles:
            h.remove()


@contextlib.contextmanager
def _transformer_rules(board: RuleBoard, census: OperationCensus | None, stack: _ModuleStack | None):
    with gradient_frame(), TransformerRules(board, census, where=stack.innermost if stack else None):
        yield


def record(model: nn.Module, rules: dict, x: Tensor, *, measure: bool, watch: tuple[str, ...] = (),
           what: str = "the model", attention: str | None = None,
           census: OperationCensus | None = None, fixed: tuple[Tensor, ...] = ()) -> Recorded:
    """Run the forward of ``model`` on ``x`` with relevance nodes behind every hooked module, keeping
    the outputs of the ``watch`` modules.

    ``attention`` (``attnlrp`` | ``cp``): a transformer, recorded under
    :class:`~xaiopt.lrp.attention.TransformerRules` in the gradient x input frame (the parameters
    frozen meanwhile, so that only input-dependent tensors require gradients); ``census`` then
    counts what ran on the input's path. ``fixed``: the model's inputs after ``x`` (a question),
    passed as they are; relevance is taken at ``x`` only."""
    board = RuleBoard(rules, attention)
    recorder = Recorder(model, board, hooked_modules(model, rules), watch=watch)
    saved: list[Tensor] = []
    frozen = [p for p in model.parameters() if p.requires_grad] if attention is not None else []
    stack = _ModuleStack(model) if census is not None else None
    rules_mode = (_transformer_rules(board, census, stack) if attention is not None
                  else contextlib.nullcontext())
    try:
        for p in frozen:
            p.requires_grad_(False)
        with torch.enable_grad():
            inp = x.detach().clone().requires_grad_(True)
            if measure:
                def pack(t):
                    # stored detached: a node that saves its own output (softmax, attention) would
                    # otherwise hold that output with its grad_fn, a cycle through the C++ graph that
                    # Python's collector cannot free (a recorded forward the cache did not keep leaked)
                    t = t.detach()
                    saved.append(t)
                    return t

                with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t), rules_mode:
                    out = model(inp, *fixed)
            else:
                with rules_mode:
                    out = model(inp, *fixed)
    finally:
        recorder.remove()
        if stack is not None:
            stack.remove()
        for p in frozen:
            p.requires_grad_(True)
    watched = called_once(recorder.outputs, what=what)
    base = _nbytes([inp, out, *saved, *(s.x for s in recorder.sites), *(s.y for s in recorder.sites),
                    *watched.values()]) if measure else 0
    return Recorded(inp=inp, out=out, board=board, sites=recorder.sites, base_bytes=base,
                    model_ref=weakref.ref(model), watched=watched)


def operation_census(model: nn.Module, example_input: Tensor) -> OperationCensus:
    """What a transformer computes on the input's path, measured on one recorded forward under the
    transformer rules: calls per kind of rule, and the operations no rule covers, by name and module.

    Example::

        census = operation_census(vit, x[:1])
        census.counts      # {'layer_norm': 25, 'scaled_dot_product_attention': 12, 'activation gelu': 12, ...}
        census.uncovered   # [] or ['normalize in layers.0.blocks.0.attn', ...]
    """
    census = OperationCensus()
    record(model, ungrouped_rules(model), example_input[:1], measure=False, attention=ATTENTION_RULES[0],
           census=census)
    return census


def relevance_of(entry: Recorded, targets: Tensor, *, keep: bool) -> Tensor:
    """Input relevance (channels summed) of the target logits, seeded with the logits themselves."""
    return relevances(entry.out, entry.inp, {}, targets, keep=keep,
                      gradient_frame=entry.board.attention is not None)[INPUT]


class LrpExplainer:
    """``explain(x, targets) -> (N, 1, H, W)``: the spec's LRP relevance, in chunks of ``batch_budget``.

    With a :class:`~xaiopt.lrp.cache.ForwardCache`, a chunk whose model and input were seen before
    runs the backward only. :meth:`relevance_at` gives the relevance at chosen modules' outputs too.
    """

    def __init__(self, spec: ExplainerSpec, model: nn.Module, layers: LayerGroups, *, low: Tensor | None,
                 high: Tensor | None, batch_budget: int, cache: ForwardCache | None = None) -> None:
        self.model = model
        self.attention = spec.attention
        self.rules = rule_table(spec, model, layers, low=low, high=high)
        self.batch_budget = batch_budget
        self.cache = cache if cache is not None and cache.budget_bytes > 0 else None
        self._names = tuple(self.rules)
        self._what = "the canonized twin" if spec.canonize else "the model"

    def __call__(self, x: Tensor, targets: Tensor, fixed: tuple[Tensor, ...] = ()) -> Tensor:
        """``fixed``: the model's inputs after ``x``, one row per sample of ``x`` (a VQA model's
        questions); they enter the forward as they are, and only ``x`` gets relevance."""
        return self._run(x, targets, (), fixed)[INPUT]

    def relevance_at(self, x: Tensor, targets: Tensor, layers: Sequence[str],
                     fixed: tuple[Tensor, ...] = ()) -> dict[str, Tensor]:
        """Relevance at the outputs of the modules named ``layers`` (each ``(N, C, ...)``, the shape of
        that output), plus the input relevance ``(N, 1, H, W)`` under ``"input"`` (what the call gives).

        Names are module names of the model this explainer runs on (``named_modules()``); a module must
        run once per forward. The value at a module's output is the gradient the spec's LRP backward
        pass has at that tensor: the relevance the layers above send to it.

        Example::

            at = explain.relevance_at(x, targets, layers=["features.10"])
            per_channel = at["features.10"].sum(dim=(0, 2, 3))     # (C,)
        """
        return self._run(x, targets, layer_names(self.model, layers, what=self._what), fixed)

    def _run(self, x: Tensor, targets: Tensor, watch: tuple[str, ...],
             fixed: tuple[Tensor, ...] = ()) -> dict[str, Tensor]:
        model_key = model_fingerprint(self.model) if self.cache is not None else None
        return concat_chunks([self._explain(xc, tc, model_key, watch, fc)
                              for xc, tc, fc in sample_chunks(x, targets, fixed, self.batch_budget)])

    def _explain(self, x: Tensor, targets: Tensor, model_key, watch: tuple[str, ...],
                 fixed: tuple[Tensor, ...] = ()) -> dict[str, Tensor]:
        cache = self.cache
        gradient_frame = self.attention is not None
        if cache is None:
            entry = record(self.model, self.rules, x, measure=False, watch=watch, what=self._what,
                           attention=self.attention, fixed=fixed)
            return relevances(entry.out, entry.inp, entry.watched, targets, keep=False, gradient_frame=gradient_frame)
        # an entry keeps the outputs of the modules it watched: a different set is a different entry; a
        # transformer's entry serves both attention rules (read at backward time), not a CNN spec. The fixed
        # inputs are part of the key: one image asked two questions is two forwards
        key = (model_key, self._names, watch, gradient_frame, input_fingerprint(x),
               tuple(input_fingerprint(f) for f in fixed))
        entry = cache.lookup(key, self.model)
        fresh = entry is None
        if fresh:
            entry = record(self.model, self.rules, x, measure=True, watch=watch, what=self._what,
                           attention=self.attention, fixed=fixed)
            if cache.admits(entry):
                for site in entry.sites:
                    if site.x is not None:
                        site.derived = {}
            else:
                return relevances(entry.out, entry.inp, entry.watched, targets, keep=False,
                                  gradient_frame=gradient_frame)
        entry.board.rules = self.rules
        entry.board.attention = self.attention
        result = relevances(entry.out, entry.inp, entry.watched, targets, keep=True, gradient_frame=gradient_frame)
        if fresh:
            cache.store(key, entry)
        else:
            cache.trim(key)  # what this spec's rules derived and kept counts against the budget
        return result
