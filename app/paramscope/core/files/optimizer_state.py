"""What an optimizer's ``state_dict()`` in a checkpoint holds: its kind, groups and per-parameter state.

``optimizer.state_dict()`` keeps no parameter names: ``param_groups[i]["params"]`` lists integer
ids, in the order the parameters were given to the optimizer, and ``state[id]`` holds that
parameter's buffers (Adam's ``exp_avg``/``exp_avg_sq``, SGD's ``momentum_buffer``). Nor does it
keep the optimizer's class: :func:`guess_kind` names it from the state's keys.

Names: the usual ``Adam(model.parameters())`` gives the parameters in ``model.parameters()``
order, which is the order of the parameter keys of ``model.state_dict()`` (tied ones once). So
the ids are mapped, in order, to the model's parameters (:func:`name_states`), but only when the
counts agree and every state tensor has its parameter's shape; an optimizer built over another
selection or order (frozen layers left out, decay/no-decay groups) is then shown by id instead.
Even a mapping that passes those checks rests on that assumption, and the note says so.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import torch
from torch import nn

from paramscope.core.model.tensor_stats import tensor_stats

# state keys -> (kind, family), first match wins; the family is what the one-line messages say
_KINDS: tuple[tuple[frozenset[str], str, str], ...] = (
    (frozenset({"exp_avg", "exp_avg_sq", "mu_product"}), "NAdam", "Adam-like"),
    (frozenset({"exp_avg", "exp_avg_sq"}), "Adam", "Adam-like"),
    (frozenset({"exp_avg", "exp_inf"}), "Adamax", "Adam-like"),
    (frozenset({"momentum_buffer"}), "SGD with momentum", "SGD-like"),
    (frozenset({"square_avg", "acc_delta"}), "Adadelta", "Adadelta-like"),
    (frozenset({"square_avg"}), "RMSprop", "RMSprop-like"),
    (frozenset({"sum"}), "Adagrad", "Adagrad-like"),
    (frozenset({"prev", "step_size"}), "Rprop", "Rprop-like"),
)
# hyper-parameters of a group worth showing (the rest are flags such as foreach/fused)
_GROUP_KEYS = ("lr", "betas", "momentum", "weight_decay", "eps", "alpha", "nesterov", "amsgrad")


def is_optimizer_state(value: object) -> bool:
    """Whether ``value`` looks like ``optimizer.state_dict()``."""
    return (
        isinstance(value, Mapping)
        and isinstance(value.get("state"), Mapping)
        and isinstance(value.get("param_groups"), list | tuple)
    )


def optimizer_entries(obj: Mapping[Any, Any]) -> list[tuple[str, Mapping[Any, Any]]]:
    """``(where, state_dict)`` of every optimizer state at the top of a checkpoint.

    Lightning keeps a list of them (``optimizer_states``); most scripts one (``optimizer``).
    """
    found: list[tuple[str, Mapping[Any, Any]]] = []
    for key, value in obj.items():
        if is_optimizer_state(value):
            found.append((str(key), value))
        elif isinstance(value, list | tuple) and len(value) <= 64:
            found += [(f"{key}[{i}]", v) for i, v in enumerate(value) if is_optimizer_state(v)]
    return found


@dataclass(frozen=True)
class StateStats:
    """Statistics of one per-parameter state tensor (``exp_avg`` of parameter 3, say)."""

    index: int  # the optimizer's id of the parameter
    key: str  # "exp_avg", "momentum_buffer", ...
    shape: tuple[int, ...]
    dtype: str
    mean: float | None
    std: float | None
    min: float | None
    max: float | None
    norm: float | None
    name: str | None = None  # the parameter's name, when the ids could be mapped

    def to_dict(self) -> dict[str, object]:
        return {
            "index": self.index,
            "name": self.name,
            "key": self.key,
            "shape": list(self.shape),
            "dtype": self.dtype,
            "mean": self.mean,
            "std": self.std,
            "min": self.min,
            "max": self.max,
            "norm": self.norm,
        }


@dataclass
class OptimizerSummary:
    """One optimizer state of a checkpoint, without its tensors (their statistics instead)."""

    entry: str  # where in the file: "optimizer", "optimizer_states[0]"
    kind: str  # guessed: "Adam", "AdamW", "SGD with momentum", "unknown"
    family: str  # "Adam-like", ...
    state_keys: list[str]  # every key found in the per-parameter states
    groups: list[dict[str, object]]  # lr, number of parameters, main hyper-parameters
    param_ids: list[int]  # every parameter id, in group order
    stored: int  # how many parameters have state
    step: float | None  # the step count of the first state that has one
    stats: list[StateStats] = field(default_factory=list)
    shapes: dict[int, tuple[int, ...]] = field(default_factory=dict)  # id -> its state's shape
    mapped: bool = False  # ``stats`` carry parameter names

    def describe(self) -> str:
        """One line: ``Adam (6 parameter states, exp_avg, exp_avg_sq; lr 0.001)``."""
        lrs = ", ".join(str(g.get("lr")) for g in self.groups)
        keys = ", ".join(k for k in self.state_keys if k != "step") or "no per-parameter state"
        return f"{self.kind} ({self.stored} parameter states, {keys}; lr {lrs})"

    def to_dict(self) -> dict[str, object]:
        return {
            "entry": self.entry,
            "kind": self.kind,
            "family": self.family,
            "state_keys": list(self.state_keys),
            "lr": [g.get("lr") for g in self.groups],
            "groups": [dict(g) for g in self.groups],
            "parameters": len(self.param_ids),
            "parameter_states": self.stored,
            "step": self.step,
            "mapped_to_names": self.mapped,
            "states": [s.to_dict() for s in self.stats],
        }


def guess_kind(state_keys: set[str], groups: Sequence[Mapping[str, Any]]) -> tuple[str, str]:
    """``(kind, family)`` from the per-parameter state keys and the group keys."""
    group_keys = {k for g in groups if isinstance(g, Mapping) for k in g}
    for needed, kind, family in _KINDS:
        if needed <= state_keys:
            if kind == "Adam" and any(isinstance(g, Mapping) and g.get("decoupled_weight_decay") for g in groups):
                kind = "AdamW"
            return kind, family
    if not state_keys and {"momentum", "dampening", "nesterov"} <= group_keys:
        return "SGD", "SGD-like"  # plain SGD keeps no state
    return "unknown", "unknown kind"


def _plain(value: object) -> object:
    if isinstance(value, bool | int | float | str) or value is None:
        return value
    if isinstance(value, list | tuple) and all(isinstance(v, bool | int | float) for v in value):
        return list(value)
    if isinstance(value, torch.Tensor) and value.numel() == 1:
        return value.item()
    return str(value)


def _ids(group: Mapping[str, Any]) -> list[Any]:
    """The parameter ids of a group (a damaged file may hold anything there)."""
    params = group.get("params")
    return list(params) if isinstance(params, list | tuple) else []


def _group(group: Mapping[str, Any]) -> dict[str, object]:
    out: dict[str, object] = {"params": len(_ids(group))}
    out.update({k: _plain(group[k]) for k in _GROUP_KEYS if k in group})
    return out


def _stat(index: int, key: str, tensor: torch.Tensor) -> StateStats:
    s = tensor_stats(tensor)
    dtype = str(tensor.dtype).removeprefix("torch.")
    return StateStats(index, key, tuple(tensor.shape), dtype, s.mean, s.std, s.min, s.max, s.norm)


def summarize_optimizer(value: Mapping[Any, Any], entry: str = "optimizer") -> OptimizerSummary:
    """Kind, groups and per-parameter state statistics of an ``optimizer.state_dict()``.

    Scalar states (Adam's ``step``) are not listed per parameter; the first one is ``step``.

    Example:
        >>> p = torch.nn.Parameter(torch.ones(2))
        >>> opt = torch.optim.SGD([p], lr=0.1, momentum=0.9)
        >>> p.grad = torch.ones(2); opt.step()
        >>> summarize_optimizer(opt.state_dict()).describe()
        'SGD with momentum (1 parameter states, momentum_buffer; lr 0.1)'
    """
    groups = [g for g in value.get("param_groups") or [] if isinstance(g, Mapping)]
    ids = [i for g in groups for i in _ids(g) if isinstance(i, int)]
    states = value.get("state") or {}
    keys: dict[str, None] = {}
    stats: list[StateStats] = []
    shapes: dict[int, tuple[int, ...]] = {}
    step: float | None = None
    for index, state in states.items():
        if not isinstance(state, Mapping):
            continue
        for key, item in state.items():
            keys[str(key)] = None
            if not isinstance(item, torch.Tensor):
                if key == "step" and step is None and isinstance(item, int | float):
                    step = float(item)
                continue
            if item.dim() == 0:
                if key == "step" and step is None and not item.is_complex():
                    step = float(item.item())
                continue
            if isinstance(index, int):
                shapes.setdefault(index, tuple(item.shape))
                stats.append(_stat(index, str(key), item))
    kind, family = guess_kind(set(keys), groups)
    return OptimizerSummary(entry, kind, family, list(keys), [_group(g) for g in groups], ids, len(states), step, stats, shapes)


def name_states(summary: OptimizerSummary, parameters: Sequence[tuple[str, tuple[int, ...] | None]]) -> str:
    """Give ``summary``'s states the names of ``parameters`` (in ``model.parameters()`` order).

    Returns the note saying whether (and on what assumption) they were mapped.
    """
    where = f"optimizer state {summary.entry!r}"
    if len(summary.param_ids) != len(parameters):
        return (
            f"{where}: {len(summary.param_ids)} parameters in the optimizer, {len(parameters)} in the model: "
            "shown by the optimizer's index"
        )
    names = {pid: parameters[position] for position, pid in enumerate(summary.param_ids)}
    for pid, shape in summary.shapes.items():
        if pid not in names or names[pid][1] != shape:
            got = names[pid][0] if pid in names else "?"
            return f"{where}: state {pid} has shape {list(shape)}, unlike {got}: shown by the optimizer's index"
    summary.stats = [replace(s, name=names[s.index][0]) for s in summary.stats]
    summary.mapped = True
    return (
        f"{where}: parameter ids mapped to names in model.parameters() order "
        "(assumes the optimizer was built over model.parameters(); counts and shapes agree)"
    )


def model_parameters(model: nn.Module) -> list[tuple[str, tuple[int, ...] | None]]:
    """``(name, shape)`` of ``model.parameters()`` in order (tied ones once; None: uninitialized)."""
    out: list[tuple[str, tuple[int, ...] | None]] = []
    for name, p in model.named_parameters():
        lazy = isinstance(p, nn.parameter.UninitializedParameter)
        out.append((name, None if lazy else tuple(p.shape)))
    return out


def summarize_for_model(
    states: Sequence[tuple[str, Mapping[Any, Any]]], model: nn.Module | None
) -> tuple[list[OptimizerSummary], list[str]]:
    """Summaries of the optimizer states found beside the weights, named after ``model``'s
    parameters where they fit (see the module docstring); returns them and the notes."""
    summaries: list[OptimizerSummary] = []
    notes: list[str] = []
    if not states:  # most files: no walk over the model's (maybe 100,000) parameters
        return summaries, notes
    parameters = model_parameters(model) if model is not None else None
    for where, value in states:
        summary = summarize_optimizer(value, where)
        summaries.append(summary)
        notes.append(f"optimizer state {where!r}: {summary.describe()}")
        if parameters is not None and summary.shapes:
            notes.append(name_states(summary, parameters))
    return summaries, notes
