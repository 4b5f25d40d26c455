"""The whole inspection of a model as plain data (what ``paramscope inspect --json`` prints)."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Sequence
from typing import Any, Generic, TypeVar, overload

import torch
from torch import nn

from paramscope.core.model.diagnostics import diagnose
from paramscope.core.model.json_ready import json_ready
from paramscope.core.model.model_statistics import TensorSummary, compute_model_statistics
from paramscope.core.model.report import ModelReport, ModuleInfo, TensorInfo, build_report
from paramscope.core.tasks import TaskState

Item = TypeVar("Item")


class Entries(Sequence[dict[str, Any]], Generic[Item]):
    """JSON entries made when read, one per item: the output of a million tensors is written entry
    by entry and never held whole (a few KB per tensor: gigabytes).

    ``ready_for_json``: ``make`` promises JSON-ready entries (:func:`json_ready`: no NaN or Inf
    float), so a writer need not look into them.
    """

    def __init__(
        self, items: Sequence[Item], make: Callable[[Item], dict[str, Any]], ready_for_json: bool = False
    ) -> None:
        self._items = items
        self._make = make
        self.ready_for_json = ready_for_json

    def __len__(self) -> int:
        return len(self._items)

    def __iter__(self) -> Iterator[dict[str, Any]]:
        return map(self._make, self._items)

    @overload
    def __getitem__(self, index: int) -> dict[str, Any]: ...
    @overload
    def __getitem__(self, index: slice) -> list[dict[str, Any]]: ...
    def __getitem__(self, index: int | slice) -> dict[str, Any] | list[dict[str, Any]]:
        if isinstance(index, slice):
            return [self._make(item) for item in self._items[index]]
        return self._make(self._items[index])


def tensor_entry(info: TensorInfo, summary: TensorSummary | None) -> dict[str, Any]:
    entry: dict[str, Any] = {
        "name": info.name,
        "aliases": list(info.aliases),
        "shape": None if info.shape is None else list(info.shape),
        "dtype": info.dtype,
        "device": info.device,
        "numel": info.numel,
        "bytes": info.nbytes,
        "requires_grad": info.requires_grad,
    }
    if info.kind == "buffer":
        entry["persistent"] = info.persistent
    if summary is not None:
        stats, histogram = summary.stats.to_dict(), summary.histogram.to_dict()
        numbers = [v for v in stats.values() if type(v) is float]
        if not math.isfinite(sum(numbers, sum(histogram["edges"]))):  # (a sum past float's range too)
            stats, histogram = json_ready(stats), json_ready(histogram)
        entry["stats"], entry["histogram"] = stats, histogram
    return entry


def module_entry(m: ModuleInfo) -> dict[str, Any]:
    return {
        "name": m.name,
        "type": m.type_name,
        "extra_repr": m.extra_repr,
        "own_params": m.own_params,
        "total_params": m.total_params,
        "children": m.children,
        "same_as": m.same_as,
    }


def report_to_dict(
    report: ModelReport, summaries: dict[str, TensorSummary] | None = None, lazy: bool = False
) -> dict[str, Any]:
    """The report (and statistics) as JSON-ready data. With ``lazy`` the modules, parameters and
    buffers are :class:`Entries`, made when read (for writing them out once)."""
    summaries = summaries or {}

    def listed(items: Sequence[Item], make: Callable[[Item], dict[str, Any]]) -> Sequence[dict[str, Any]]:
        return Entries(items, make, ready_for_json=True) if lazy else [make(item) for item in items]

    return {
        "modules": listed(list(report.modules.values()), module_entry),
        "parameters": listed(list(report.parameters.values()), lambda p: tensor_entry(p, summaries.get(p.name))),
        "buffers": listed(list(report.buffers.values()), lambda b: tensor_entry(b, summaries.get(b.name))),
        "tied_groups": [list(g.names) for g in report.tied_groups],
        "tied_group_kinds": [g.kind for g in report.tied_groups],
        "unregistered": [
            {
                "module": u.module,
                "attribute": u.attribute,
                "kind": u.kind,
                "shape": None if u.shape is None else list(u.shape),
                "dtype": u.dtype,
                "message": u.message,
            }
            for u in report.unregistered
        ],
        "diagnostics": [d.to_dict() for d in diagnose(report, summaries)],
        "total_params": report.total_params,
        "unique_params": report.unique_params,
    }


def inspect_model(
    model: nn.Module,
    bins: int = 32,
    state: TaskState | None = None,
    loader: Callable[[str], torch.Tensor] | None = None,
    lazy: bool = False,
) -> dict[str, Any]:
    """Report, statistics and diagnostics of ``model`` as JSON-ready data.

    ``loader`` reads the values of a lazily opened source's placeholders, one tensor at a time;
    ``lazy``: see :func:`report_to_dict`.
    """
    report = build_report(model)
    summaries = compute_model_statistics(model, report, state, bins=bins, loader=loader)
    return report_to_dict(report, summaries, lazy)
