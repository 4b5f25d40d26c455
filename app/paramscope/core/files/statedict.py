"""State dicts without a class: find the weights in a checkpoint and build a module tree from them.

A checkpoint is often more than a state_dict: ``{"epoch": 3, "model": {...}, "optimizer": {...}}``.
:func:`split_checkpoint` takes the weights from the ``model``/``state_dict`` entry and keeps the
rest as extras. :func:`build_module` turns dotted names into a real ``nn.Module`` hierarchy of
containers holding Parameters and buffers, so the report, init and export work as on any model.
Tensors that were one tensor in the file (same storage view, or a safetensors alias) become one
Parameter object, so ties survive.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from paramscope.core.errors import shown
from paramscope.core.files.infer_types import mark_inferred_types
from paramscope.core.files.optimizer_state import guess_kind, is_optimizer_state, optimizer_entries
from paramscope.core.files.unknown import UnknownObject

# entries of a training checkpoint that hold the model's weights, most specific first
WEIGHT_KEYS = (
    "state_dict", "model_state_dict", "model", "module", "net", "network",
    "model_ema", "ema", "weights", "params", "params_ema", "generator",
)
# names that are buffers by convention, whatever their dtype
_BUFFER_NAMES = frozenset({"running_mean", "running_var", "num_batches_tracked"})
# Module levels made from a dotted name: deeper parts stay in the tensor's own (dotted) key, so
# torch's recursive walks (named_modules, state_dict) never meet thousands of levels.
MAX_DEPTH = 100

NO_FORWARD = (
    "a state_dict holds tensors only, no code: forward and backward need the model's class "
    "(open FILE.py:NAME --weights THIS_FILE)"
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


class StateDictModule(nn.Module):
    """A container module holding tensors read from a file; it has no forward."""

    def __init__(self, kind: str = "") -> None:
        super().__init__()
        self._kind = kind

    def extra_repr(self) -> str:
        return self._kind

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        raise RuntimeError(NO_FORWARD)


def _view_key(t: torch.Tensor) -> tuple[object, ...] | None:
    if t.device.type == "meta":  # no memory: every meta storage has data_ptr 0, none is shared
        return None
    try:
        storage = t.untyped_storage()
        if storage.nbytes() == 0:
            return None
        return (str(t.device), storage.data_ptr(), t.storage_offset(), tuple(t.shape), tuple(t.stride()), t.dtype)
    except (RuntimeError, NotImplementedError):
        return None


def is_buffer_name(name: str, tensor: torch.Tensor, quantized: frozenset[str] = frozenset()) -> bool:
    """Whether ``name`` was a buffer in the saved model: by convention, dtype or its place.

    A quantized layer (its path in ``quantized``) keeps ``scale``/``zero_point`` beside
    ``_packed_params``; a parametrization (torch.nn.utils.parametrize) keeps its constant
    ``base`` as a buffer.
    """
    parent, _, leaf = name.rpartition(".")
    if leaf in _BUFFER_NAMES or not (tensor.is_floating_point() or tensor.is_complex()):
        return True
    if leaf == "base" and ".parametrizations." in f".{parent}":
        return True
    return parent in quantized or parent.endswith("._packed_params") or parent == "_packed_params"


def _taken(module: nn.Module, name: str) -> bool:
    """``hasattr(module, name)`` without Module.__getattr__'s raise for free names (~10x faster)."""
    return (
        name in module.__dict__
        or name in module._parameters
        or name in module._buffers
        or name in module._modules
        or hasattr(type(module), name)
    )


class _Containers:
    """Makes empty :class:`StateDictModule` objects from a blank one's attributes.

    ``nn.Module.__init__`` sets ~20 attributes through ``Module.__setattr__``; setting the same
    plain values and new empty dicts directly is several times faster, which matters for
    checkpoints of thousands of modules. Where a blank module holds anything else (a future
    torch), modules are built as usual.
    """

    _CONTAINERS = (dict, OrderedDict, set, list)

    def __init__(self) -> None:
        state = StateDictModule().__dict__
        self._values = {k: v for k, v in state.items() if type(v) not in self._CONTAINERS}
        self._empty = [(k, type(v)) for k, v in state.items() if type(v) in self._CONTAINERS]
        self._plain = all(
            isinstance(v, bool | str | None) for v in self._values.values()
        ) and not any(state[k] for k, _ in self._empty)

    def make(self) -> StateDictModule:
        if not self._plain:
            return StateDictModule()
        module = StateDictModule.__new__(StateDictModule)
        attributes = module.__dict__
        attributes.update(self._values)
        for name, kind in self._empty:
            attributes[name] = kind()  # a new empty one (OrderedDict.copy() costs ~10x more)
        return module


def _free_name(parent: nn.Module, wanted: str) -> str:
    name = wanted or "_"
    while _taken(parent, name) and name not in parent._modules:
        name += "_"
    return name


def build_module(checkpoint: Checkpoint, kind: str = "state_dict") -> tuple[nn.Module, list[str]]:
    """Build a module tree from dotted tensor names; returns the root and notes.

    Tensors that are the same view of one storage, or a safetensors alias, become one object
    registered under every name, as in the model that was saved.

    Example:
        >>> root, _ = build_module(Checkpoint({"0.weight": torch.ones(3, 4), "0.bias": torch.zeros(3)}))
        >>> [n for n, _ in root.named_parameters()]
        ['0.weight', '0.bias']
    """
    root = StateDictModule(kind)
    containers = _Containers()
    notes: list[str] = []
    by_view: dict[tuple[object, ...], nn.Parameter | torch.Tensor] = {}
    made: dict[str, nn.Parameter | torch.Tensor] = {}
    parents: dict[str | None, tuple[nn.Module, str]] = {None: (root, "")}
    names = list(checkpoint.tensors) + [a for a in checkpoint.aliases if a not in checkpoint.tensors]
    # quantized layers (their scale and zero_point are buffers, not weights)
    quantized = frozenset(n.partition("._packed_params.")[0] for n in names if "._packed_params." in n)
    for name in names:
        target = checkpoint.aliases.get(name, name) if name not in checkpoint.tensors else name
        if target not in checkpoint.tensors:
            continue
        if target in made and target != name:
            obj = made[target]
        else:
            tensor = checkpoint.tensors[target]
            key = None if checkpoint.distinct else _view_key(tensor)
            if key is not None and key in by_view:
                obj = by_view[key]
            elif is_buffer_name(target, tensor, quantized):
                obj = tensor.data if isinstance(tensor, nn.Parameter) else tensor
            else:
                obj = nn.Parameter(tensor, requires_grad=True)
            if key is not None:
                by_view.setdefault(key, obj)
            made[target] = obj
        made[name] = obj
        _place(root, name, obj, notes, containers, parents)
    mark_inferred_types(root, StateDictModule)  # "Linear (inferred)" instead of StateDictModule everywhere
    return root, notes


def _parent(
    root: nn.Module,
    prefix: str | None,
    name: str,
    notes: list[str],
    containers: _Containers,
    parents: dict[str | None, tuple[nn.Module, str]],
) -> tuple[nn.Module, str]:
    """The module at dotted ``prefix`` (None: the root) and its path, made on first use.

    Names come sorted, so most share their parent with the name before: one dict lookup.
    Iterative, not recursive: a name may have thousands of dotted levels.
    """
    found = parents.get(prefix)
    if found is not None:
        return found
    assert prefix is not None  # the root is in ``parents`` from the start
    missing: list[str] = []  # prefixes without a module yet, deepest first
    above: str | None = prefix
    while found is None:
        assert above is not None
        missing.append(above)
        head, dot, _part = above.rpartition(".")
        above = head if dot else None
        found = parents.get(above)
    module, path = found
    for each in reversed(missing):
        module, path = parents[each] = _child(module, path, each.rpartition(".")[2], name, notes, containers)
    return module, path


def _child(
    module: nn.Module, path: str, part: str, name: str, notes: list[str], containers: _Containers
) -> tuple[nn.Module, str]:
    """The container ``part`` of ``module`` (made if missing, renamed if the name is taken)."""
    child = module._modules.get(part)
    if child is None:
        free = _free_name(module, part)
        if free != part:
            notes.append(f"{name}: part {part!r} renamed {free!r} (it clashes with a name already used)")
        child = module._modules.get(free)
        if child is None:  # a free, dot-free name: add_module's checks are done
            child = module._modules[free] = containers.make()
        part = free
    return child, f"{path}.{part}" if path else part


def _split_deep(name: str, notes: list[str]) -> tuple[str, str, str]:
    """``(prefix, ".", leaf)`` with the first :data:`MAX_DEPTH` parts as modules, the rest the leaf.

    ``state_dict()`` and ``named_parameters()`` join prefix and key, so the full name survives.
    """
    parts = name.split(".")
    notes.append(
        f"{shown(name[:60])}…: {len(parts) - 1} dotted levels; modules made for the first {MAX_DEPTH}, "
        "the rest kept in the tensor's name"
    )
    return ".".join(parts[:MAX_DEPTH]), ".", ".".join(parts[MAX_DEPTH:])


def _place(
    root: nn.Module,
    name: str,
    obj: torch.Tensor,
    notes: list[str],
    containers: _Containers,
    parents: dict[str | None, tuple[nn.Module, str]],
) -> None:
    prefix, dot, leaf = _split_deep(name, notes) if name.count(".") > MAX_DEPTH else name.rpartition(".")
    module, path = _parent(root, prefix if dot else None, name, notes, containers, parents)
    free = leaf
    if not leaf or _taken(module, leaf):
        free = _free_name(module, leaf)
        while free in module._modules or free in module._parameters or free in module._buffers:
            free += "_"
        stored = f"{path}.{free}" if path else free
        notes.append(f"{name}: stored as {stored!r} (the name clashes)")
    # ``free`` is a free, dot-free name (register_*'s checks); the tensors come from a file
    if isinstance(obj, nn.Parameter):
        module._parameters[free] = obj
    else:
        module._buffers[free] = obj
