"""fan_in and fan_out: torch's numbers, and where they mislead.

Every fan-based initializer in torch (``xavier_*``, ``kaiming_*``, and the modules'
``reset_parameters``) takes its fans from ``torch.nn.init._calculate_fan_in_and_fan_out``,
which reads them off the weight's *shape*: ``fan_in = shape[1] * receptive field`` and
``fan_out = shape[0] * receptive field``. paramscope's theory overlay uses that same function,
so its numbers are torch's. The shape does not say everything:

- Grouped and depthwise convolutions (``groups > 1``): the weight is ``(out, in/groups, k...)``,
  so fan_in is right, but each input channel feeds only ``out/groups`` output channels while
  torch counts all ``out``: fan_out is ``groups`` times too large (pytorch/pytorch#23854,
  "Fan out calculation broken for depthwise convolution": ``Conv2d(4, 4, 3, groups=4)`` gives
  ``(9, 36)`` where ``(9, 9)`` is meant).
- Transposed convolutions: the weight is ``(in, out/groups, k...)``, the other way round from a
  convolution, so torch's "fan_in" is ``out/groups * k`` (the connections *out of* an input) and
  its "fan_out" ``in * k``. Counted per connection, a transposed convolution with stride 1 has
  ``fan_in = in/groups * k`` and ``fan_out = out/groups * k`` (with stride ``s`` each output
  sees about ``1/prod(s)`` of them).
- A mixture of experts' weights stacked in one 3-D tensor (transformers 5's ``*Experts`` modules:
  ``(experts, out, in)``, or ``(experts, in, out)`` where ``is_transposed``): torch reads it as a
  convolution's weight, ``fan_in = out * in`` and ``fan_out = experts * in``, where each expert's
  matrix has ``fan_in = in`` and ``fan_out = out``.

:func:`fan_note` says so, with both numbers, for the fans an initializer actually uses.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import init as torch_init

from paramscope.core.model.experts import expert_matrices, experts_layout

ISSUE_23854 = "pytorch/pytorch#23854"
_CONVOLUTIONS = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d)


def torch_fans(tensor: torch.Tensor) -> tuple[int, int]:
    """torch's own ``(fan_in, fan_out)`` for ``tensor`` (what its initializers use)."""
    return torch_init._calculate_fan_in_and_fan_out(tensor)


@dataclass(frozen=True)
class FanNote:
    """torch's fans of a weight next to the fans counted per connection, and why they differ."""

    torch_fan_in: int
    torch_fan_out: int
    fan_in: int
    fan_out: int
    why: str

    def text(self, uses: tuple[str, ...] = ("fan_in", "fan_out")) -> str:
        mine = {"fan_in": self.fan_in, "fan_out": self.fan_out}
        theirs = {"fan_in": self.torch_fan_in, "fan_out": self.torch_fan_out}
        parts = [f"torch's {u}={theirs[u]}, per connection {u}={mine[u]}" for u in uses if mine[u] != theirs[u]]
        return f"{'; '.join(parts)} ({self.why})"

    def misleads(self, uses: tuple[str, ...]) -> bool:
        return any(
            getattr(self, u) != getattr(self, f"torch_{u}") for u in uses if u in ("fan_in", "fan_out")
        )


def connection_fans(module: nn.Module, tensor: torch.Tensor) -> FanNote | None:
    """For a convolution's weight or stacked experts: torch's fans and those counted per
    connection; else None."""
    transposed = experts_layout(module, tensor)
    if transposed is not None:
        return _expert_fans(module, tensor, transposed)
    if not isinstance(module, _CONVOLUTIONS) or tensor is not module.weight or tensor.dim() < 3:
        return None
    groups = int(module.groups)
    receptive = math.prod(tensor.shape[2:])
    torch_in, torch_out = torch_fans(tensor)
    if module.transposed:
        fan_in = module.in_channels // groups * receptive
        fan_out = module.out_channels // groups * receptive
        stride = tuple(module.stride)
        why = (f"{type(module).__name__}: a transposed weight is (in, out/groups, k...), torch reads it as a "
               "convolution's" + (f"; with stride {stride} each output sees about 1/{math.prod(stride)} of fan_in"
                                  if math.prod(stride) > 1 else ""))  # fmt: skip
    else:
        fan_in, fan_out = torch_in, module.out_channels // groups * receptive
        kind = "depthwise" if groups == module.in_channels else "grouped"
        why = f"{type(module).__name__}(groups={groups}), {kind}: each input feeds out_channels/groups outputs, {ISSUE_23854}"
    if (fan_in, fan_out) == (torch_in, torch_out):
        return None
    return FanNote(torch_in, torch_out, fan_in, fan_out, why)


def _expert_fans(module: nn.Module, tensor: torch.Tensor, transposed: bool) -> FanNote:
    experts, fan_out, fan_in = expert_matrices(tensor, transposed).shape
    torch_in, torch_out = torch_fans(tensor)
    layout = "(experts, in, out)" if transposed else "(experts, out, in)"
    why = (f"{type(module).__name__}: {experts} experts' matrices stacked {layout}, torch reads them as one "
           "convolution's weight")  # fmt: skip
    return FanNote(torch_in, torch_out, fan_in, fan_out, why)


def fans_used(initializer: str, kwargs: dict) -> tuple[str, ...]:
    """Which fans an initializer reads: xavier both, kaiming its mode, ``default`` (a conv's
    ``reset_parameters``: kaiming_uniform_ on fan_in) fan_in; others none."""
    name = initializer.rstrip("_")
    if name.startswith("xavier"):
        return ("fan_in", "fan_out")
    if name.startswith("kaiming"):
        return (str(kwargs.get("mode", "fan_in")),)
    if name == "default":
        return ("fan_in",)
    return ()


def fan_note(module: nn.Module, tensor: torch.Tensor, initializer: str, kwargs: dict) -> str | None:
    """One line when ``initializer`` on ``tensor`` (a weight of ``module``) uses a fan torch
    gets wrong for this layer, with both numbers; None otherwise."""
    uses = fans_used(initializer, kwargs)
    note = connection_fans(module, tensor) if uses else None
    if note is None or not note.misleads(uses):
        return None
    return note.text(uses)
