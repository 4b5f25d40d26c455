"""The hooks of a backward run: which module is running, each use of a parameter, the signal.

During the forward, a pre-hook on each module swaps each of its parameters for an alias
``p[...]`` for the duration of that call (restored by the matching post-hook or, on error, by
:meth:`Recorder.remove`). Gradients flow through the alias into ``p`` exactly as they would
into ``p`` itself, so ``.grad`` is PyTorch's. Before backward, :meth:`Recorder.count_uses` walks
the autograd graph to find the parameters used several times; tensor hooks on their aliases
keep each use's gradient by reference (no copy). The post-hooks also feed signal propagation
(:mod:`paramscope.core.backward.signal`), and the stack of running modules names the innermost one when
the forward raises.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from paramscope.core.backward.backward_errors import one_line
from paramscope.core.backward.grad_summary import UsePart, tensor_version
from paramscope.core.backward.signal import SignalRecorder
from paramscope.core.model.tensor_stats import data_problem

# The autograd node that writes a leaf's .grad (its ``variable`` is the leaf).
_ACCUMULATE_GRAD = torch._C._functions.AccumulateGrad
ROOT_LABEL = "(root)"


@dataclass
class _Use:
    name: str  # module call name
    view: torch.Tensor
    grad: torch.Tensor | None = None  # the gradient itself, not a copy
    reached: bool = False  # on the loss's graph (found by count_uses)
    fired: bool = False  # the hook saw a gradient
    derived: bool = False  # no hook: its part is the total minus the other uses
    version: int = 0  # of ``grad`` when kept


class Recorder:
    """Forward pre/post hooks: the module stack (for errors), per-use views, signal."""

    def __init__(self, model: nn.Module, record_parts: bool, record_signal: bool) -> None:
        self.model = model
        self.record_parts = record_parts
        self.signal = SignalRecorder() if record_signal else None
        # One walk of the module tree per run: each walk of a large model is not free.
        self.named = list(model.named_modules(remove_duplicate=False))
        self.modules = list({id(m): m for _, m in self.named}.values())
        self.leaf_ids = {id(m) for m in self.modules if SignalRecorder.is_leaf(m)}
        self.names: dict[int, list[str]] = {}
        for name, module in self.named:
            self.names.setdefault(id(module), []).append(name or ROOT_LABEL)
        self.calls: dict[int, int] = {}
        self.stack: list[tuple[int, int, str, str]] = []  # (module id, call id, name, type)
        self.swaps: dict[int, list[tuple[nn.Module, str, torch.Tensor]]] = {}
        self.originals: dict[tuple[int, str], nn.Parameter] = {}
        self.uses: dict[int, list[_Use]] = {}
        self.multi_ids: set[int] = set()  # parameters used several times: parts are kept
        self.direct_edges: dict[int, int] = {}  # uses no module call saw, per parameter
        self._viewable_ids: dict[int, bool] = {}
        self.handles: list[torch.utils.hooks.RemovableHandle] = []
        self.notes: list[str] = []
        self._ids = itertools.count()

    def install(self) -> None:
        for module in self.modules:
            try:
                self.handles.append(module.register_forward_pre_hook(self._pre))
                self.handles.append(module.register_forward_hook(self._post))
            except (RuntimeError, AttributeError, TypeError) as exc:  # e.g. TorchScript modules
                self.notes.append(
                    f"{type(module).__name__} takes no forward hooks ({one_line(exc, 120)}): "
                    "no per-use parts, signal propagation or module names in errors"
                )
                break

    def remove(self) -> None:
        """Remove every hook and undo every parameter swap still in place (after an error)."""
        for handle in self.handles:
            handle.remove()
        self.handles.clear()
        for call_id in sorted(self.swaps, reverse=True):
            self._restore(call_id)

    def _call_name(self, module: nn.Module) -> str:
        names = self.names.get(id(module), [type(module).__name__])
        index = self.calls.get(id(module), 0)
        self.calls[id(module)] = index + 1
        if index < len(names):  # the same module under several names: i-th call, i-th name
            return names[index]
        return f"{names[0]} (call {index + 1})"

    def _pre(self, module: nn.Module, args: object) -> None:
        name = self._call_name(module)
        call_id = next(self._ids)
        self.stack.append((id(module), call_id, name, type(module).__name__))
        if self.record_parts and torch.is_grad_enabled():
            self._swap_parameters(module, call_id, name)

    def _swap_parameters(self, module: nn.Module, call_id: int, name: str) -> None:
        swapped: list[tuple[nn.Module, str, torch.Tensor]] = []
        for local, current in list(module._parameters.items()):
            if current is None:
                continue
            if isinstance(current, nn.Parameter):
                self.originals[(id(module), local)] = current
                real = current
            else:  # a re-entrant call: the first call's view is in place
                real = self.originals.get((id(module), local))  # type: ignore[assignment]
                if real is None:
                    continue
            if not self._viewable(real):
                continue
            # An alias: its backward hands the gradient on as is (view_as's reshape makes a
            # view of it, and autograd then cannot sum a tied weight's uses in place).
            view = real[...]
            self.uses.setdefault(id(real), []).append(_Use(name, view))
            module._parameters[local] = view  # bypasses __setattr__'s Parameter check on purpose
            swapped.append((module, local, current))
        if swapped:
            self.swaps[call_id] = swapped

    def _viewable(self, param: nn.Parameter) -> bool:
        """Whether uses of ``param`` are seen through views (checked once per run)."""
        known = self._viewable_ids.get(id(param))
        if known is None:
            known = param.requires_grad and data_problem(param) is None
            self._viewable_ids[id(param)] = known
        return known

    @staticmethod
    def _keep_part(use: _Use) -> Callable[[torch.Tensor], None]:
        def hook(grad: torch.Tensor) -> None:
            # Kept by reference: autograd never adds into a buffer someone else references.
            kept = grad.detach()
            use.fired = True
            use.grad = kept if use.grad is None else use.grad + kept
            use.version = tensor_version(use.grad)  # checked when the part is read

        return hook

    def parts_of(self, param_id: int) -> list[UsePart]:
        """The uses of one parameter that received a gradient, in forward order."""
        uses = self.uses.get(param_id, []) if param_id in self.multi_ids else []
        return [
            UsePart(use.name, None if use.derived else use.grad, use.version)
            for use in uses
            if use.fired or use.derived
        ]

    def count_uses(self, loss: torch.Tensor) -> None:
        """Walk the autograd graph: parameters reached by two or more edges keep per-use parts.

        Counting edges into each parameter's AccumulateGrad node also finds uses no module call
        saw (a parent reading ``self.child.weight`` directly, an RNN's flat weight list). Then
        hooks the views of those parameters: their per-use gradients are kept during backward.
        """
        # Nodes are kept referenced while their ids are in use: a node's Python object can be
        # freed once dropped (torch 2.11 does), and a later node's object may reuse its id.
        view_uses = [(use.view.grad_fn, use) for uses in self.uses.values() for use in uses]
        view_nodes = {id(fn): (fn, use) for fn, use in view_uses if fn is not None}
        edges: dict[int, int] = {}
        seen: dict[int, object] = {}
        stack = [loss.grad_fn] if loss.grad_fn is not None else []
        while stack:
            node = stack.pop()
            if id(node) in seen:
                continue
            seen[id(node)] = node
            for child, _ in node.next_functions:
                if child is None:
                    continue
                if type(child) is _ACCUMULATE_GRAD:
                    variable = id(child.variable)
                    edges[variable] = edges.get(variable, 0) + 1
                    self.direct_edges[variable] = self.direct_edges.get(variable, 0) + 1
                elif id(child) in view_nodes:
                    # one use through a module call: the view's own edge leads to the parameter
                    if id(child) not in seen:
                        seen[id(child)] = child
                        view_nodes[id(child)][1].reached = True
                        for grandchild, _ in child.next_functions:
                            if type(grandchild) is _ACCUMULATE_GRAD:
                                variable = id(grandchild.variable)
                                edges[variable] = edges.get(variable, 0) + 1
                else:
                    stack.append(child)
        self.multi_ids.update(pid for pid, count in edges.items() if count > 1)
        self._hook_uses()

    def _hook_uses(self) -> None:
        """Tensor hooks on the views of parameters used several times (others need none).

        Without direct uses the parts sum to the total, so one use (the last called, which
        backward reaches first) gets no hook: autograd sums the others into its gradient in
        place, as it does without hooks (a gradient a hook saw is never summed into in place),
        and its part is the total minus the others'.
        """
        for param_id in self.multi_ids:
            uses = [use for use in self.uses.get(param_id, []) if use.reached]
            if uses and self.direct_edges.get(param_id, 0) == 0:
                uses[-1].derived = True
                uses = uses[:-1]
            for use in uses:
                use.view.register_hook(self._keep_part(use))

    def _restore(self, call_id: int) -> None:
        for module, local, previous in reversed(self.swaps.pop(call_id, [])):
            module._parameters[local] = previous

    def _post(self, module: nn.Module, args: object, output: object) -> None:
        # Pop up to this module's call (a forward that swallowed a child's error leaves extras).
        while self.stack:
            module_id, call_id, name, _ = self.stack.pop()
            self._restore(call_id)
            if module_id == id(module):
                break
        else:
            return
        if self.signal is not None and id(module) in self.leaf_ids:
            self.signal.on_output(name, module, output)

    @property
    def innermost(self) -> tuple[str, str]:
        if not self.stack:
            return ROOT_LABEL, type(self.model).__name__
        _, _, name, type_name = self.stack[-1]
        return name, type_name
