"""Forward hooks that put one relevance node behind every hooked module call.

A module with a rule runs its own forward on a detached input with autograd off (no graph is built
inside it); its output then re-enters the graph through :class:`_Relay`, whose backward is the
rule's relevance map, looked up by module name in a :class:`RuleBoard` *at backward time*. Every
other operation keeps its plain autograd backward, which is how zennit treats it too (max pooling,
concatenation, residual additions outside a ``Sum``, ``GateMul``, reshapes). So one forward and one
backward give the composite's relevance, and a kept graph answers for another spec by swapping the
board's rules.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from xaiopt.lrp.rules import LrpRule, Pass, stabilize
from xaiopt.lrp.site import Site
from xaiopt.space.groups import is_weighted

# LXT's zennit bridge divides a rule's input relevance by the input stabilized with this
GRADIENT_FRAME_EPSILON = 1e-10


class RuleBoard:
    """The rules a recorded graph reads when it is differentiated (mutable between backward passes).

    ``attention``: ``None`` for the relevance frame of CNNs (what flows backward is relevance);
    ``attnlrp`` | ``cp`` for transformers, recorded under :class:`~xaiopt.lrp.attention.TransformerRules`
    in the gradient x input frame, the attention rule read at backward time.
    """

    def __init__(self, rules: dict[str, LrpRule], attention: str | None = None) -> None:
        self.rules = rules
        self.attention = attention


class _Relay(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: Tensor, site: Site, board: RuleBoard) -> Tensor:
        ctx.site, ctx.board = site, board
        # an alias, so in-place changes of the output downstream show in the site's version check
        return site.y.detach()

    @staticmethod
    def backward(ctx, grad: Tensor):
        site, board = ctx.site, ctx.board
        if board.attention is None:
            relevance = board.rules[site.name].relevance(site, grad)
        else:  # gradient x input frame: the rule maps R_out = grad * y to R_in, passed on as R_in / stab(x)
            relevance = board.rules[site.name].relevance(site, grad * site.output())
            relevance = relevance / stabilize(site.input(), GRADIENT_FRAME_EPSILON)
        if relevance.shape != site.x_shape:
            raise RuntimeError(
                f"LRP: the rule of {site.name!r} gives relevance of shape {tuple(relevance.shape)} for an input of "
                f"shape {tuple(site.x_shape)}"
            )
        return relevance, None, None


class Recorder:
    """Hooks on ``names`` of ``model`` that record :class:`Site` s and relay relevance.

    ``keeps_input[name]``: whether the rules of that module can need its input and output
    (``False`` for modules whose rule is ``Pass`` in every spec: activations and batch norms).
    ``watch``: modules whose outputs are collected in :attr:`outputs` (one entry per call) as the
    graph continues from them: a hooked module's relay output, any other module's own output.
    """

    def __init__(self, model: nn.Module, board: RuleBoard, keeps_input: dict[str, bool],
                 watch: tuple[str, ...] = ()) -> None:
        self.board = board
        self.sites: list[Site] = []
        self.outputs: dict[str, list] = {name: [] for name in watch}
        self._pending: dict[int, list] = {}
        self._kept_outputs: set[int] = set()  # ids of relay outputs whose site keeps them
        self._handles = []
        modules = dict(model.named_modules())
        for name, keep in keeps_input.items():
            module = modules[name]
            self._handles.append(module.register_forward_pre_hook(self._pre(name)))
            self._handles.append(module.register_forward_hook(self._post(name, keep)))
        for name in watch:
            if name not in keeps_input:
                self._handles.append(modules[name].register_forward_hook(self._watcher(name)))

    def _pre(self, name: str):
        def hook(module, args):
            stack = self._pending.setdefault(id(module), [])
            if not (torch.is_grad_enabled() and args and isinstance(args[0], Tensor) and args[0].requires_grad):
                stack.append(None)
                return None
            x = args[0]
            stack.append(x)
            torch.set_grad_enabled(False)
            inner = x.detach()
            # an in-place activation must not overwrite the output a weighted layer's rule reads
            if getattr(module, "inplace", False) and id(x) in self._kept_outputs:
                inner = inner.clone()
            return (inner, *args[1:])

        return hook

    def _watcher(self, name: str):
        def hook(module, args, output):
            self.outputs[name].append(output)

        return hook

    def _post(self, name: str, keep: bool):
        watched = self.outputs.get(name)

        def hook(module, args, output):
            x = self._pending[id(module)].pop()
            if x is None:
                if watched is not None:
                    watched.append(output)
                return None
            torch.set_grad_enabled(True)
            site = Site(name, module, x.detach() if keep else None, output if keep else None)
            site.x_shape = x.shape
            if not keep:
                site.y = output  # needed once for the relay's own output, dropped below
            self.sites.append(site)
            out = _Relay.apply(x, site, self.board)
            if keep:
                self._kept_outputs.add(id(out))
            else:
                site.y = None
            if watched is not None:
                watched.append(out)
            return out

        return hook

    def remove(self) -> None:
        for h in self._handles:
            h.remove()
        self._handles.clear()


def hooked_modules(model: nn.Module, rules: dict[str, LrpRule]) -> dict[str, bool]:
    """Module name -> whether its site keeps input and output."""
    return {name: not isinstance(rule, Pass) or is_weighted(model.get_submodule(name)) for name, rule in rules.items()}
