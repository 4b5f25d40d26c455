"""State dicts without a class: find the weights in a checkpoint.

A checkpoint is often more than a state_dict: ``{"epoch": 3, "model": {...}, "optimizer": {...}}``.
:func:`split_checkpoint` takes the weights from the ``model``/``state_dict`` entry and keeps the
rest as extras. :mod:`~paramscope.core.files.module_tree` builds the module tree from the names
(:func:`build_module`, also importable from here).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from paramscope.core.files.module_tree import NO_FORWARD, build_module
from paramscope.core.files.optimizer_state import guess_kind, is_optimizer_state, optimizer_entries
from paramscope.core.files.unknown import UnknownObject

__all__ = ["NO_FORWARD", "WEIGHT_KEYS", "Checkpoint", "build_module", "describe", "split_checkpoint", "weight_entries"]

# entries of a training checkpoint that hold the model's weights, most specific first
WEIGHT_KEYS = (
    "state_dict", "model_state_dict", "model", "module", "net", "network",
    "model_ema", "ema", "weights", "params", "params_ema", "generator",
)


@dataclass
class Checkpoint:
    """Tensors found in a file, plus what else it held."""

    tensors: dict[str, torch.Tensor]
    aliases: dict[str, str] = field(default_factory=dict)  # alias name -> stored name
    extras: dict[str, object] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    module: nn.Module | None = None  # a whole pickled module (trusted files only)
    distinct: bool = False  # no two tensors share memory (safetensors: checked in the header)
    # set when ``tensors`` are shape-only (meta) placeholders: loads one tensor's values by name
    loader: Callable[[str], torch.Tensor] | None = None
    entry: str | None = None  # the entry the weights came from ("model", "ema")
    entries: list[str] = field(default_factory=list)  # every entry holding a weight set
    # ``(where, optimizer.state_dict())`` found beside the weights (summarized by the opener)
    optimizer_states: list[tuple[str, Mapping[Any, Any]]] = field(default_factory=list)

    def all_tensors(self) -> dict[str, torch.Tensor]:
        """Every name, aliases included, mapped to its tensor."""
        out = dict(self.tensors)
        for alias, target in self.aliases.items():
            if target in self.tensors:
                out[alias] = self.tensors[target]
        return out


def describe(value: object, depth: int = 0) -> object:
    """A short, JSON-friendly view of a non-tensor checkpoint entry.

    Small dicts (hyper-parameters, a config) are shown entry by entry, a few levels deep.
    """
    if value is None or isinstance(value, bool | int | float):
        return value
    if isinstance(value, str):
        return value if len(value) <= 200 else value[:197] + "..."
    if isinstance(value, UnknownObject):
        return value.describe()
    if isinstance(value, torch.Tensor):
        return f"tensor {list(value.shape)} {str(value.dtype).removeprefix('torch.')}"
    if isinstance(value, Mapping):
        if "param_groups" in value and "state" in value:
            groups = value.get("param_groups") or []
            lrs = [g.get("lr") for g in groups if isinstance(g, Mapping) and "lr" in g]
            states = value.get("state") or {}
            held = states.values() if isinstance(states, Mapping) else []
            keys = {str(k) for state in held if isinstance(state, Mapping) for k in state}
            kind = guess_kind(keys, groups if isinstance(groups, list | tuple) else [])[0]
            return f"optimizer state ({kind}): {len(states)} parameter states, {len(groups)} group(s), lr={lrs}"
        if depth < 3 and len(value) <= 32:
            return {str(k): describe(v, depth + 1) for k, v in value.items()}
        return f"dict with {len(value)} entries"
    if isinstance(value, list | tuple):
        if len(value) <= 8 and all(isinstance(v, bool | int | float | str) for v in value):
            return list(value)
        if depth < 3 and len(value) <= 8 and all(isinstance(v, Mapping) for v in value):
            return [describe(v, depth + 1) for v in value]  # Lightning's optimizer_states, lr_schedulers
        return f"{type(value).__name__} of {len(value)} items"
    return type(value).__name__


def _flatten(prefix: str, value: Mapping[str, Any], tensors: dict[str, torch.Tensor], extras: dict[str, object]) -> None:
    for key, item in value.items():
        name = f"{prefix}{key}"
        if isinstance(item, torch.Tensor):
            tensors[name] = item
        elif _tensor_tuple(item):  # a quantized layer's packed (weight, bias): one name each
            tensors.update({f"{name}.{i}": t for i, t in enumerate(item) if t is not None})
        elif isinstance(item, Mapping) and item and not ("param_groups" in item and "state" in item):
            _flatten(name + ".", item, tensors, extras)
        else:
            extras[name] = describe(item)


def _tensor_tuple(value: object) -> bool:
    return (
        isinstance(value, tuple)
        and any(isinstance(t, torch.Tensor) for t in value)
        and all(t is None or isinstance(t, torch.Tensor) for t in value)
    )


def _tensor_count(value: object) -> int:
    if isinstance(value, nn.Module):
        return 1
    if isinstance(value, Mapping):
        return sum(isinstance(v, torch.Tensor) for v in value.values())
    return 0


def weight_entries(obj: Mapping[Any, Any]) -> list[str]:
    """The top-level entries of a checkpoint that hold a weight set, likeliest first.

    The :data:`WEIGHT_KEYS` that hold tensors come first, then any other entry holding tensors
    directly (``teacher``, ``ema_state_dict``); optimizer states are not weight sets.
    """
    known = [k for k in WEIGHT_KEYS if _tensor_count(obj.get(k)) > 0]
    others = [
        str(k) for k, v in obj.items()
        if k not in known and not is_optimizer_state(v) and _tensor_count(v) > 0
    ]  # fmt: skip
    return known + others


def _optimizer_only(obj: Mapping[Any, Any]) -> str:
    """Why a bare ``optimizer.state_dict()`` is refused as a model: what it holds, in one line."""
    states = obj.get("state") or {}
    keys = {str(k): None for state in states.values() if isinstance(state, Mapping) for k in state}
    _, family = guess_kind(set(keys), obj.get("param_groups") or [])
    shown_keys = [k for k in keys if k != "step"]
    held = f"{family}: {', '.join(shown_keys)}" if shown_keys else family
    return (
        f"is an optimizer state ({len(states)} parameter states, {held}), not model weights; "
        "open the checkpoint that holds the model"
    )


def split_checkpoint(obj: object, where: str, entry: str | None = None) -> Checkpoint:
    """Find the weights in what a file held.

    Args:
        obj: the loaded object: a state_dict, a checkpoint dict, a module, a tensor or a tuple.
        where: the file, for messages.
        entry: take the weights from this entry of a checkpoint (``"ema"``); by default the
            first of :data:`WEIGHT_KEYS` that holds tensors.

    Raises:
        ValueError: not weights (e.g. a bare optimizer state), or ``entry`` is not in it.

    Example:
        >>> ck = split_checkpoint({"epoch": 3, "model": {"w": torch.ones(2)}}, "x.pt")
        >>> list(ck.tensors), ck.extras
        (['w'], {'epoch': 3})
    """
    if entry is not None and (not isinstance(obj, Mapping) or not weight_entries(obj)):
        raise ValueError(f"has no entries to choose from (--entry {entry}): it holds one set of weights")
    if isinstance(obj, nn.Module):
        return Checkpoint({}, module=obj)
    if isinstance(obj, torch.Tensor):
        return Checkpoint({"tensor": obj}, notes=[f"{where} holds a single tensor, shown as 'tensor'"])
    if isinstance(obj, list | tuple) and obj and all(isinstance(t, torch.Tensor) for t in obj):
        return Checkpoint({str(i): t for i, t in enumerate(obj)}, notes=[f"{where} holds a {type(obj).__name__} of tensors"])
    if not isinstance(obj, Mapping):
        raise ValueError(f"holds a {type(obj).__name__}, not a state_dict or checkpoint")
    if is_optimizer_state(obj):
        raise ValueError(_optimizer_only(obj))
    if obj and all(isinstance(v, torch.Tensor) for v in obj.values()):
        return Checkpoint({str(k): v for k, v in obj.items()})
    entries = weight_entries(obj)
    if entry is not None and entry not in entries:
        raise ValueError(f"has no weight entry {entry!r}; entries holding weights: {', '.join(entries)}")
    optimizers = optimizer_entries(obj)
    key = entry if entry is not None else next((k for k in entries if k in WEIGHT_KEYS), None)
    if key is not None:
        return _from_entry(obj, key, entries, optimizers, chosen=entry is not None)
    tensors: dict[str, torch.Tensor] = {}
    extras: dict[str, object] = {}
    _flatten("", obj, tensors, extras)
    notes = ["non-tensor entries kept as extras: " + ", ".join(extras)] if extras else []
    if not tensors:
        notes.append("no tensors found")
    return Checkpoint(tensors, extras=extras, notes=notes, optimizer_states=optimizers)


def _other_weights(key: str, value: object) -> str:
    """An entry holding another weight set, in one line (its tensors one by one say little)."""
    if isinstance(value, nn.Module):
        return f"weights: a {type(value).__name__} module (open it with --entry {key})"
    count = _tensor_count(value)
    return f"weights: {count} tensor{'s' if count != 1 else ''} (open them with --entry {key})"


def _from_entry(
    obj: Mapping[Any, Any],
    key: str,
    entries: list[str],
    optimizers: list[tuple[str, Mapping[Any, Any]]],
    chosen: bool,
) -> Checkpoint:
    """The weights of entry ``key``; the rest of the checkpoint as extras and notes."""
    value = obj[key]
    extras = {
        str(k): _other_weights(str(k), v) if str(k) in entries else describe(v) for k, v in obj.items() if k != key
    }
    notes = [f"weights taken from the {key!r} entry" + (" (as asked)" if chosen else "")]
    others = [e for e in entries if e != key]
    if others:
        notes.append(
            "also holds weights in " + ", ".join(repr(e) for e in others) + f" (open one with --entry {others[0]})"
        )
    if extras:
        notes.append("other entries kept as extras: " + ", ".join(extras))
    found = dict(entry=key, entries=list(entries), optimizer_states=optimizers)
    if isinstance(value, nn.Module):
        return Checkpoint({}, extras=extras, notes=notes, module=value, **found)
    tensors: dict[str, torch.Tensor] = {}
    inner_extras: dict[str, object] = {}
    _flatten("", value, tensors, inner_extras)
    extras.update({f"{key}.{k}": v for k, v in inner_extras.items()})
    return Checkpoint(tensors, extras=extras, notes=notes, **found)
