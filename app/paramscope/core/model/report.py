"""The model report: module tree, parameters, buffers, tied groups and unregistered tensors.

:func:`build_report` reads only structure (names, shapes, identities), so it is fast and the
tree can appear at once; statistics come separately from :mod:`paramscope.core.model.model_statistics`.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from functools import cached_property

import torch
from torch import nn

from paramscope.core.model.tensor_stats import data_problem
from paramscope.core.model.unregistered import Unregistered, unregistered_in
from paramscope.core.tasks import TaskState, part, steps

INFERRED_ATTRIBUTE = "_paramscope_inferred_type"  # = core.files.infer_types.INFERRED_ATTRIBUTE (no import: cycle)


_LAZY = nn.parameter.UninitializedTensorMixin


def is_lazy(tensor: torch.Tensor) -> bool:
    # issubclass on the type: isinstance goes through Parameter's slow __instancecheck__
    return issubclass(type(tensor), _LAZY)


_DTYPE_NAMES: dict[torch.dtype, str] = {}


def _dtype_name(tensor: torch.Tensor) -> str:
    dtype = tensor.dtype
    name = _DTYPE_NAMES.get(dtype)
    if name is None:
        name = _DTYPE_NAMES[dtype] = str(dtype).removeprefix("torch.")
    return name


@dataclass(frozen=True, slots=True)  # slots: a million of them without a dict each
class TensorInfo:
    """One parameter or buffer, under its canonical (first) name and every alias."""

    name: str
    aliases: tuple[str, ...]
    kind: str  # "parameter" or "buffer"
    shape: tuple[int, ...] | None  # None for lazy (uninitialized) parameters
    dtype: str
    device: str
    requires_grad: bool
    numel: int
    nbytes: int
    persistent: bool = True
    note: str | None = None  # why there is no data (lazy, meta), if so

    @property
    def module(self) -> str:
        return self.name.rpartition(".")[0]

    @property
    def local_name(self) -> str:
        return self.name.rpartition(".")[2]

    @property
    def is_tied(self) -> bool:
        return len(self.aliases) > 1

    def relative_name(self, module: str) -> str | None:
        """The name ``model.get_submodule(module).named_parameters()`` gives, or None if outside."""
        if module == "":
            return self.name
        prefix = module + "."
        for alias in self.aliases:
            if alias.startswith(prefix):
                return alias[len(prefix) :]
        return None

    def shape_text(self) -> str:
        return "uninitialized" if self.shape is None else "[" + ", ".join(map(str, self.shape)) + "]"


@dataclass(slots=True)
class ModuleInfo:
    """One node of the module tree, as ``print(net)`` shows it."""

    name: str  # qualified name, "" for the root
    type_name: str
    extra_repr: str
    # tuples: nothing changes them, and an empty one is shared (three lists per module were a
    # quarter of the objects the cyclic collector walked for a checkpoint of tiny tensors)
    children: tuple[str, ...] = ()
    parameters: tuple[str, ...] = ()  # canonical names of own parameters
    buffers: tuple[str, ...] = ()
    own_params: int = 0  # elements of own parameters
    total_params: int = 0  # elements in the subtree, a shared parameter counted once
    same_as: str | None = None  # this module object already appeared under that name
    # A checkpoint without code: what the container probably was, from its tensors' names and
    # shapes (core.files.infer_types), e.g. "Linear(in_features=4, out_features=3)"; a guess.
    inferred_type: str | None = None

    @property
    def local_name(self) -> str:
        return self.name.rpartition(".")[2]

    @property
    def parent(self) -> str | None:
        if self.name == "":
            return None
        return self.name.rpartition(".")[0]


@dataclass(frozen=True)
class TiedGroup:
    """Names that reach one tensor (``same parameter``) or tensors sharing memory (``shared storage``)."""

    names: tuple[str, ...]
    kind: str

    def describe(self) -> str:
        return f"{self.kind}: " + " = ".join(self.names)


@dataclass
class ModelReport:
    modules: dict[str, ModuleInfo]
    parameters: dict[str, TensorInfo]
    buffers: dict[str, TensorInfo]
    tied_groups: list[TiedGroup]
    unregistered: list[Unregistered]
    alias_to_name: dict[str, str]

    @cached_property  # cached: the status bar shows it at every selection
    def total_params(self) -> int:
        """Elements counted once per name, as summing over every alias would."""
        return sum(p.numel * len(p.aliases) for p in self.parameters.values())

    @cached_property
    def unique_params(self) -> int:
        """Elements of distinct parameters: a shared parameter counted once."""
        return sum(p.numel for p in self.parameters.values())

    @property
    def root(self) -> ModuleInfo:
        return self.modules[""]

    @cached_property
    def order(self) -> dict[str, int]:
        """Position of each canonical tensor name: the parameters, then the buffers, as listed.

        Made once (in the worker that opens a file, see ``Session``): with 100,000 tensors,
        ordering a few names by it is instant where finding them by a pass is not.
        """
        return {name: i for i, name in enumerate((*self.parameters, *self.buffers))}

    @cached_property
    def module_order(self) -> dict[str, int]:
        """Each module's position in ``modules``; made once, see order."""
        return {name: i for i, name in enumerate(self.modules)}

    @cached_property
    def module_rows(self) -> dict[str, int]:
        """Each module's row under its parent (its place in the parent's ``children``); made once."""
        return {child: row for info in self.modules.values() for row, child in enumerate(info.children)}

    def tensor(self, name: str) -> TensorInfo:
        """A parameter or buffer by any of its names."""
        canonical = self.alias_to_name.get(name, name)
        if canonical in self.parameters:
            return self.parameters[canonical]
        return self.buffers[canonical]

    def parameters_under(self, module: str) -> Iterator[tuple[str, TensorInfo]]:
        """``(relative name, info)`` as ``get_submodule(module).named_parameters()`` yields them."""
        yield from self._under(self.parameters, module)

    def buffers_under(self, module: str) -> Iterator[tuple[str, TensorInfo]]:
        yield from self._under(self.buffers, module)

    @staticmethod
    def _under(table: dict[str, TensorInfo], module: str) -> Iterator[tuple[str, TensorInfo]]:
        for info in table.values():
            relative = info.relative_name(module)
            if relative is not None:
                yield relative, info

    def group_of(self, name: str) -> TiedGroup | None:
        canonical = self.alias_to_name.get(name, name)
        for group in self.tied_groups:
            if canonical in group.names or name in group.names:
                return group
        return None


def storage_address(tensor: torch.Tensor) -> int | None:
    """Where ``tensor``'s storage starts (``untyped_storage().data_ptr()``); None when it holds no
    bytes (an empty storage is never shared).

    From the tensor's own address and offset: torch keeps the Python object ``untyped_storage()``
    makes for as long as the storage lives, one more object per tensor of the model.
    """
    if tensor.numel() == 0:  # a view of no elements may still sit on a storage with bytes
        storage = tensor.untyped_storage()
        return storage.data_ptr() if storage.nbytes() else None
    return tensor.data_ptr() - tensor.storage_offset() * tensor.element_size()


_DEVICE_NAMES: dict[torch.device, str] = {}


def _device_name(device: torch.device) -> str:
    name = _DEVICE_NAMES.get(device)
    if name is None:
        name = _DEVICE_NAMES[device] = str(device)
    return name


@dataclass
class _Collected:
    """The parameters (or buffers) of a model, each once, found by name and by object."""

    infos: dict[str, TensorInfo]  # canonical name -> info
    by_id: dict[int, TensorInfo]  # id(tensor) -> info
    alias_to_name: dict[str, str]
    storages: list[tuple[tuple[str, int], str]]  # (device, storage address), canonical name


def _collect(
    named: list[tuple[str, torch.Tensor]], kind: str, non_persistent: set[str], state: TaskState | None = None
) -> _Collected:
    """One :class:`TensorInfo` per distinct tensor of ``named``, under its first name."""
    first: dict[int, tuple[str, torch.Tensor]] = {}
    more: dict[int, list[str]] = {}  # every name of a tensor met under several
    for item in named:
        key = id(item[1])
        if key in first:
            more.setdefault(key, [first[key][0]]).append(item[0])
        else:
            first[key] = item
    out = _Collected({}, {}, {}, [])
    strided = torch.strided
    for key, (canonical, tensor) in steps(first.items(), len(first), state, f"describing {kind}s"):
        names = more.get(key)
        lazy = issubclass(type(tensor), _LAZY)  # (isinstance goes through Parameter's metaclass)
        numel = 0 if lazy else tensor.numel()
        dtype, device = tensor.dtype, tensor.device
        dense = not lazy and device.type != "meta" and tensor.layout == strided
        info = TensorInfo(  # (positional: a million of them)
            canonical,
            (canonical,) if names is None else tuple(names),
            kind,
            None if lazy else tuple(tensor.shape),
            _DTYPE_NAMES.get(dtype) or _dtype_name(tensor),
            _DEVICE_NAMES.get(device) or _device_name(device),
            bool(tensor.requires_grad),
            numel,
            numel * dtype.itemsize,
            canonical not in non_persistent,
            None if dense else data_problem(tensor),
        )
        out.infos[canonical] = out.by_id[key] = info
        if dense:
            address = storage_address(tensor)
            if address is not None:
                out.storages.append(((info.device, address), canonical))
    out.alias_to_name = {name: name for name in out.infos}
    for names in more.values():
        out.alias_to_name.update((name, names[0]) for name in names)
    return out


def _tied_groups(params: _Collected, buffers: _Collected) -> list[TiedGroup]:
    groups = [TiedGroup(p.aliases, "same parameter") for p in params.infos.values() if p.is_tied]
    groups += [TiedGroup(b.aliases, "same buffer") for b in buffers.infos.values() if b.is_tied]
    by_storage: dict[tuple[str, int], list[str]] = {}
    for storage, name in buffers.storages + params.storages:
        by_storage.setdefault(storage, []).append(name)
    for names in by_storage.values():
        if len(names) > 1:
            infos = [params.infos.get(n) or buffers.infos[n] for n in names]
            all_names = tuple(alias for info in infos for alias in info.aliases)
            groups.append(TiedGroup(all_names, "shared storage"))
    return groups


def _safe_extra_repr(module: nn.Module) -> str:
    try:
        return module.extra_repr()
    except Exception as exc:  # a user's extra_repr may fail on a lazy module
        return f"<extra_repr failed: {type(exc).__name__}>"


def walk_modules(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """``model.named_modules(remove_duplicate=False)`` as a list, without recursion.

    torch's walk nests one generator per level (~10 us per module and a RecursionError past
    ~1,000 levels); this one is a loop over a stack, in the same order.
    """
    out: list[tuple[str, nn.Module]] = []
    stack: list[tuple[str, nn.Module]] = [("", model)]
    while stack:
        name, module = stack.pop()
        out.append((name, module))
        children = module._modules
        if children:
            prefix = f"{name}." if name else ""
            stack.extend((prefix + k, m) for k, m in reversed(children.items()) if m is not None)
    return out


def _named(modules: list[tuple[str, nn.Module]], table: str) -> list[tuple[str, torch.Tensor]]:
    """Every (name, tensor) of ``_parameters`` or ``_buffers``, duplicates kept, in torch's order."""
    out: list[tuple[str, torch.Tensor]] = []
    for name, module in modules:
        items = getattr(module, table)
        if items:
            prefix = f"{name}." if name else ""
            out.extend((prefix + k, v) for k, v in items.items() if v is not None)
    return out


def build_report(model: nn.Module, state: TaskState | None = None) -> ModelReport:
    """Describe ``model``'s structure without reading any tensor values. ``state``: progress
    and cancel (a checkpoint of a million tensors takes seconds).

    Example:
        >>> net = nn.Sequential(nn.Linear(4, 3), nn.ReLU(), nn.Linear(3, 1))
        >>> build_report(net).parameters["0.weight"].shape
        (3, 4)
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"expected an nn.Module, got {type(model).__name__}")
    walked = walk_modules(model)
    non_persistent = {  # (a StateDictModule makes the set on first use: none read, none made)
        f"{name}.{b}" if name else b
        for name, mod in walked
        for b in mod.__dict__.get("_non_persistent_buffers_set", ())
    }
    params = _collect(_named(walked, "_parameters"), "parameter", set(), part(state, 0.0, 0.4))
    buffers = _collect(_named(walked, "_buffers"), "buffer", non_persistent, part(state, 0.4, 0.5))
    modules, unregistered, shared_modules = _modules(walked, params, buffers, part(state, 0.5, 1.0))
    if shared_modules or any(p.is_tied for p in params.infos.values()):
        _shared_totals(modules, params.infos)
    else:  # no parameter reachable twice: a subtree's total is its own plus its children's
        for name, _module in reversed(walked):
            info = modules[name]
            info.total_params = info.own_params + sum(modules[c].total_params for c in info.children)

    return ModelReport(
        modules=modules,
        parameters=params.infos,
        buffers=buffers.infos,
        tied_groups=_tied_groups(params, buffers),
        unregistered=unregistered,
        alias_to_name={**buffers.alias_to_name, **params.alias_to_name},
    )


def _modules(
    walked: list[tuple[str, nn.Module]], params: _Collected, buffers: _Collected, state: TaskState | None = None
) -> tuple[dict[str, ModuleInfo], list[Unregistered], bool]:
    """A :class:`ModuleInfo` per walked name, the unregistered tensors, and whether a module
    object appears under several names."""
    modules: dict[str, ModuleInfo] = {}
    first_name: dict[int, str] = {}
    unregistered: list[Unregistered] = []
    registered = frozenset([*params.by_id, *buffers.by_id, *(id(m) for _, m in walked)])
    shared_modules = False
    for name, module in steps(walked, len(walked), state, "describing modules"):
        prefix = f"{name}." if name else ""
        own = [params.by_id[id(p)] for p in module._parameters.values() if p is not None]
        children, held = module._modules, module._buffers
        info = ModuleInfo(  # (positional, empty tuples shared: a million of them)
            name,
            type(module).__name__,
            _safe_extra_repr(module),
            tuple([prefix + k for k, child in children.items() if child is not None]) if children else (),
            tuple([p.name for p in own]),
            tuple([buffers.by_id[id(b)].name for b in held.values() if b is not None]) if held else (),
            sum([p.numel for p in own]),
            inferred_type=module.__dict__.get(INFERRED_ATTRIBUTE),
        )
        if id(module) in first_name:
            info.same_as = first_name[id(module)]
            shared_modules = True
        else:
            first_name[id(module)] = name
            unregistered.extend(unregistered_in(name, module, registered))
        modules[name] = info
    return modules, unregistered, shared_modules


def _shared_totals(modules: dict[str, ModuleInfo], params: dict[str, TensorInfo]) -> None:
    """Subtree totals where parameters or modules are shared: each distinct one counted once."""
    under: dict[str, set[str]] = {name: set() for name in modules}
    for info in params.values():
        for alias in info.aliases:
            for ancestor in _ancestors(alias):
                under.setdefault(ancestor, set()).add(info.name)
    for name, module_info in modules.items():
        module_info.total_params = sum(params[n].numel for n in under[name])


def _ancestors(qualified: str) -> Iterator[str]:
    """Module names above a dotted tensor name: "a.b.w" gives "", "a", "a.b"."""
    parts = qualified.split(".")[:-1]
    yield ""
    for depth in range(1, len(parts) + 1):
        yield ".".join(parts[:depth])
