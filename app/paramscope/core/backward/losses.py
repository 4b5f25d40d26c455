"""Scalar losses to run backward from, applied to whatever a model's forward returns.

A forward may return one tensor, or a structure: tuple, list, namedtuple, dict (including
HuggingFace-style ``ModelOutput``) or dataclass. A structure is reduced over its floating-point
tensor leaves: the loss is the **sum of the per-leaf losses** (integer leaves, such as returned
token ids, are skipped since they carry no gradient).

Losses:
- ``sum``: ``out.sum()``, the tutorial's ``net(X).sum()``.
- ``mean``: ``out.mean()``.
- ``l2``: squared L2 norm, ``(out ** 2).sum()``.
- ``cross_entropy``: against random labels (seeded) for class scores shaped ``(N, C)`` or
  ``(N, T, C)`` with ``C >= 2``; refused with a reason for any other output.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from paramscope.core.errors import ParamscopeError


class LossError(ParamscopeError):
    """The chosen loss does not fit the model's output."""


@dataclass(frozen=True)
class Loss:
    name: str
    description: str
    fn: Callable[[torch.Tensor, str, torch.Generator], torch.Tensor]


def _cross_entropy(out: torch.Tensor, path: str, generator: torch.Generator) -> torch.Tensor:
    where = f"output{path}" if path else "output"
    shape = tuple(out.shape)
    if out.dim() not in (2, 3):
        raise LossError(
            f"cross_entropy needs class scores shaped (N, C) or (N, T, C); {where} has shape {shape}"
        )
    classes = shape[-1]
    if classes < 2:
        raise LossError(f"cross_entropy needs at least 2 classes; {where} has shape {shape} (C={classes})")
    scores = out.reshape(-1, classes)
    labels = torch.randint(0, classes, (scores.shape[0],), generator=generator).to(out.device)
    return F.cross_entropy(scores, labels)


LOSSES: dict[str, Loss] = {
    loss.name: loss
    for loss in (
        Loss("sum", "sum of the output (the tutorial's net(X).sum())", lambda out, p, g: out.sum()),
        Loss("mean", "mean of the output", lambda out, p, g: out.mean()),
        Loss("l2", "squared L2 norm of the output, (out ** 2).sum()", lambda out, p, g: out.pow(2).sum()),
        Loss("cross_entropy", "cross-entropy against random labels, for class scores (N, C) or (N, T, C)", _cross_entropy),
    )
}
_ALIASES = {"ce": "cross_entropy", "crossentropy": "cross_entropy", "squared_l2": "l2", "sum_squares": "l2"}

STRUCTURE_NOTE = (
    "tuple, list, dict or dataclass outputs: the loss is the sum of the per-leaf losses over "
    "their floating-point tensors"
)


def get_loss(name: str) -> Loss:
    key = name.strip().lower().replace("-", "_")
    key = _ALIASES.get(key, key)
    if key not in LOSSES:
        raise LossError(f"unknown loss {name!r}; known: {', '.join(LOSSES)}")
    return LOSSES[key]


def tensor_leaves(value: object, path: str = "", depth: int = 0) -> Iterator[tuple[str, torch.Tensor]]:
    """``(path, tensor)`` for every tensor inside ``value``: ``[0]``, ``['logits']``, ``.hidden``.

    Example:
        >>> [p for p, _ in tensor_leaves((torch.ones(1), {"a": torch.zeros(2)}))]
        ['[0]', "[1]['a']"]
    """
    if depth > 20:  # a self-referencing structure: stop rather than recurse forever
        return
    if isinstance(value, torch.Tensor):
        yield path, value
    elif isinstance(value, Mapping):
        for key, item in value.items():
            yield from tensor_leaves(item, f"{path}[{key!r}]", depth + 1)
    elif isinstance(value, tuple | list):
        for index, item in enumerate(value):
            yield from tensor_leaves(item, f"{path}[{index}]", depth + 1)
    elif dataclasses.is_dataclass(value) and not isinstance(value, type):
        for f in dataclasses.fields(value):
            yield from tensor_leaves(getattr(value, f.name, None), f"{path}.{f.name}", depth + 1)


def differentiable_leaves(output: object) -> list[tuple[str, torch.Tensor]]:
    """Floating-point (or complex) tensor leaves of ``output``: the ones a loss can use."""
    return [(p, t) for p, t in tensor_leaves(output) if t.is_floating_point() or t.is_complex()]


def compute_loss(output: object, name: str, seed: int | None = 0) -> torch.Tensor:
    """Scalar loss of ``output`` (a tensor or a structure of tensors, see the module docstring).

    Args:
        output: what the model's forward returned.
        name: ``sum``, ``mean``, ``l2`` or ``cross_entropy``.
        seed: seed for cross-entropy's random labels.

    Raises:
        LossError: unknown loss, no floating-point tensor in the output, or cross-entropy on an
            output that is not class scores.

    Example:
        >>> compute_loss(torch.tensor([[1.0, 2.0]]), "sum").item()
        3.0
    """
    loss = get_loss(name)
    leaves = differentiable_leaves(output)
    if not leaves:
        found = [p or "output" for p, _ in tensor_leaves(output)]
        what = f"only integer tensors ({', '.join(found)})" if found else f"a {type(output).__name__}"
        raise LossError(f"cannot compute a loss: the output holds no floating-point tensor, it is {what}")
    generator = torch.Generator()
    generator.manual_seed(0 if seed is None else int(seed))
    total: torch.Tensor | None = None
    for path, tensor in leaves:
        value = tensor.abs() if tensor.is_complex() else tensor  # why: backward needs a real loss
        part = loss.fn(value, path, generator)
        total = part if total is None else total + part
    assert total is not None
    return total
