"""A module tree built from a checkpoint's dotted tensor names, in one pass over the names.

:func:`build_module` turns ``{"blocks.0.attn.weight": tensor, ...}`` into a real ``nn.Module``
hierarchy of :class:`StateDictModule` containers holding Parameters and buffers, so the report,
init and export work as on any model. Tensors that were one tensor in the file (same storage view,
or a safetensors alias) become one Parameter object, so ties survive.

A checkpoint may hold a million tiny tensors, so the per-name work is a few dictionary steps: the
names come grouped by parent, containers are made without ``nn.Module.__init__`` and without the
hook tables nobody uses (:class:`StateDictModule`), and the types are guessed over the containers
this pass made, not by another walk of the tree.
"""

from __future__ import annotations

import functools
from collections import OrderedDict
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from paramscope.core.errors import shown
from paramscope.core.files.infer_types import mark_inferred_types
from paramscope.core.model.report import storage_address
from paramscope.core.tasks import TaskState, part, steps

if TYPE_CHECKING:
    from paramscope.core.files.statedict import Checkpoint

# names that are buffers by convention, whatever their dtype
_BUFFER_NAMES = frozenset({"running_mean", "running_var", "num_batches_tracked"})
# Module levels made from a dotted name: deeper parts stay in the tensor's own (dotted) key, so
# torch's recursive walks (named_modules, state_dict) never meet thousands of levels.
MAX_DEPTH = 100

NO_FORWARD = (
    "a state_dict holds tensors only, no code: forward and backward need the model's class "
    "(open FILE.py:NAME --weights THIS_FILE)"
)

# nn.Module's hook tables and its set of non-persistent buffer names, made on first use: a blank
# module holds twelve of them (~1.6 KB and twelve objects for the cyclic collector to walk), and a
# checkpoint of a million tensors has about a million containers that never get a hook.
_ON_FIRST_USE = {name: type(value) for name, value in vars(nn.Module()).items() if type(value) in (OrderedDict, set)}


# On a root whose tensor names clashed (``c`` and ``c.0.w``, ``a..b``, ``training``): {name as
# stored: name in the file}, which :func:`paramscope.core.files.export.state_dict_for` restores.
ORIGINAL_NAMES = "_paramscope_original_names"


class StateDictModule(nn.Module):
    """A container module holding tensors read from a file; it has no forward."""

    def __init__(self, kind: str = "") -> None:
        super().__init__()
        self._kind = kind
        for name in _ON_FIRST_USE:
            del self.__dict__[name]

    def __getattr__(self, name: str) -> Any:
        if name in _ON_FIRST_USE:  # torch reads and fills them as attributes: made here, kept
            table = self.__dict__[name] = _ON_FIRST_USE[name]()
            return table
        return super().__getattr__(name)

    def extra_repr(self) -> str:
        return self._kind

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        raise RuntimeError(NO_FORWARD)


def _view_key(t: torch.Tensor) -> tuple[object, ...] | None:
    if t.device.type == "meta":  # no memory: every meta storage has data_ptr 0, none is shared
        return None
    try:
        address = storage_address(t)
        if address is None:
            return None
        return (str(t.device), address, t.storage_offset(), tuple(t.shape), tuple(t.stride()), t.dtype)
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
        or _class_has(type(module), name)
    )


@functools.cache
def _class_has(kind: type, name: str) -> bool:
    """``hasattr(kind, name)``, asked once per name: checkpoints repeat theirs ("0", "weight")."""
    return hasattr(kind, name)


def _free_name(parent: nn.Module, wanted: str) -> str:
    name = wanted or "_"
    while _taken(parent, name) and name not in parent._modules:
        name += "_"
    return name


def _objects(checkpoint: Checkpoint, state: TaskState | None) -> dict[str, nn.Parameter | torch.Tensor]:
    """Each name (aliases included) and the object registered under it: a Parameter, or the
    tensor itself for a buffer. Names for one tensor of the file get one object."""
    tensors, aliases = checkpoint.tensors, checkpoint.aliases
    names = list(tensors) + [a for a in aliases if a not in tensors]
    # quantized layers (their scale and zero_point are buffers, not weights)
    quantized = frozenset(n.partition("._packed_params.")[0] for n in names if "._packed_params." in n)
    if checkpoint.distinct and not aliases:  # (safetensors, DCP) every name is a tensor of its own
        listed = steps(tensors.items(), len(tensors), state, "making parameters")
        return {name: _object(name, tensor, quantized) for name, tensor in listed}
    by_view: dict[tuple[object, ...], nn.Parameter | torch.Tensor] = {}
    made: dict[str, nn.Parameter | torch.Tensor] = {}
    for name in steps(names, len(names), state, "making parameters"):
        target = aliases.get(name, name) if name not in tensors else name
        if target not in tensors:
            continue
        if target in made and target != name:
            made[name] = made[target]
            continue
        tensor = tensors[target]
        key = None if checkpoint.distinct else _view_key(tensor)
        obj = by_view.get(key) if key is not None else None
        if obj is None:
            obj = _object(target, tensor, quantized)
            if key is not None:
                by_view[key] = obj
        made[target] = made[name] = obj
    return made


def _object(name: str, tensor: torch.Tensor, quantized: frozenset[str]) -> nn.Parameter | torch.Tensor:
    """What is registered for a tensor of the file: a Parameter, or the tensor for a buffer."""
    if is_buffer_name(name, tensor, quantized):
        return tensor.data if isinstance(tensor, nn.Parameter) else tensor
    return nn.Parameter(tensor, requires_grad=True)


class _Tree:
    """Containers made on first use under the root, each with its dotted path."""

    def __init__(self, root: StateDictModule, notes: list[str]) -> None:
        self.notes = notes
        self.original: dict[str, str] = {}  # stored name -> the file's, once a name clashed
        self.parents: dict[str | None, tuple[nn.Module, str]] = {None: (root, "")}
        self.made: list[tuple[str, nn.Module]] = [("", root)]  # in the order made (parents first)
        blank = StateDictModule().__dict__
        # ``nn.Module.__init__`` sets its attributes through ``Module.__setattr__``; the same plain
        # values and new empty dicts set directly cost a fraction. Should a blank module hold
        # anything else (a future torch), containers are made as usual.
        self._values = {k: v for k, v in blank.items() if type(v) is not dict}
        self._dicts = [k for k, v in blank.items() if type(v) is dict]
        self._plain = all(isinstance(v, bool | str | None) for v in self._values.values()) and not any(
            blank[k] for k in self._dicts
        )

    def container(self) -> StateDictModule:
        if not self._plain:
            return StateDictModule()
        module = StateDictModule.__new__(StateDictModule)
        attributes = module.__dict__
        attributes.update(self._values)
        for name in self._dicts:
            attributes[name] = {}
        return module

    def place(self, name: str, obj: torch.Tensor) -> None:
        """Register ``obj`` under dotted ``name``, making its containers; a clash renames."""
        prefix, dot, leaf = _split_deep(name, self.notes) if name.count(".") > MAX_DEPTH else name.rpartition(".")
        found = self.parents.get(prefix if dot else None)  # names come grouped: usually known
        module, path = found if found is not None else self._parent(prefix, name)
        if not leaf or _taken(module, leaf):
            leaf = self._renamed(module, path, name, leaf)
        if self.notes and (stored := f"{path}.{leaf}" if path else leaf) != name:  # (notes: any rename)
            self.original[stored] = name
        # ``leaf`` is a free, dot-free name (register_*'s checks); the tensors come from a file
        if issubclass(type(obj), nn.Parameter):  # isinstance goes through Parameter's metaclass
            module._parameters[leaf] = obj
        else:
            module._buffers[leaf] = obj

    def _renamed(self, module: nn.Module, path: str, name: str, leaf: str) -> str:
        free = _free_name(module, leaf)
        while free in module._modules or free in module._parameters or free in module._buffers:
            free += "_"
        stored = f"{path}.{free}" if path else free
        self.notes.append(f"{name}: stored as {stored!r} (the name is taken; an export writes {name!r})")
        return free

    def _parent(self, prefix: str, name: str) -> tuple[nn.Module, str]:
        """The module at dotted ``prefix`` and its path, made with any missing levels above.

        Iterative, not recursive: a name may have thousands of dotted levels.
        """
        missing: list[str] = []  # prefixes without a module yet, deepest first
        above: str | None = prefix
        found = None
        while found is None:
            assert above is not None  # the root is in ``parents`` from the start
            missing.append(above)
            head, dot, _part = above.rpartition(".")
            above = head if dot else None
            found = self.parents.get(above)
        module, path = found
        for each in reversed(missing):
            module, path = self.parents[each] = self._child(module, path, each.rpartition(".")[2], name)
        return module, path

    def _child(self, module: nn.Module, path: str, part: str, name: str) -> tuple[nn.Module, str]:
        """The container ``part`` of ``module`` (made if missing, renamed if the name is taken)."""
        child = module._modules.get(part)
        if child is None and (not part or _taken(module, part)):
            free = _free_name(module, part)
            self.notes.append(f"{name}: part {part!r} renamed {free!r} (the name is taken; an export writes {name!r})")
            part = free
            child = module._modules.get(free)
        path = f"{path}.{part}" if path else part
        if child is None:  # a free, dot-free name: add_module's checks are done
            child = module._modules[part] = self.container()
            self.made.append((path, child))
        return child, path


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


def build_module(
    checkpoint: Checkpoint, kind: str = "state_dict", state: TaskState | None = None
) -> tuple[nn.Module, list[str]]:
    """Build a module tree from dotted tensor names; returns the root and notes.

    Tensors that are the same view of one storage, or a safetensors alias, become one object
    registered under every name, as in the model that was saved. ``state``: progress and cancel.

    Example:
        >>> from paramscope.core.files.statedict import Checkpoint
        >>> root, _ = build_module(Checkpoint({"0.weight": torch.ones(3, 4), "0.bias": torch.zeros(3)}))
        >>> [n for n, _ in root.named_parameters()]
        ['0.weight', '0.bias']
    """
    notes: list[str] = []
    tree = _Tree(StateDictModule(kind), notes)
    objects = _objects(checkpoint, part(state, 0.0, 0.3))
    for name, obj in steps(objects.items(), len(objects), part(state, 0.3, 0.8), "building the module tree"):
        tree.place(name, obj)
    mark_inferred_types(tree.made, part(state, 0.8, 1.0))  # "Linear (inferred)" instead of StateDictModule everywhere
    root = tree.parents[None][0]
    if tree.original:  # an export writes the file's names back
        root.__dict__[ORIGINAL_NAMES] = tree.original
    return root, notes
