"""The whole inspection of a model as plain data (what ``paramscope inspect --json`` prints)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from paramscope.core.diagnostics import diagnose
from paramscope.core.model_statistics import TensorSummary, compute_model_statistics
from paramscope.core.report import ModelReport, TensorInfo, build_report
from paramscope.core.tasks import TaskState


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
        entry["stats"] = summary.stats.to_dict()
        entry["histogram"] = summary.histogram.to_dict()
    return entry


def report_to_dict(
    report: ModelReport, summaries: dict[str, TensorSummary] | None = None
) -> dict[str, Any]:
    summaries = summaries or {}
    return {
        "modules": [
            {
                "name": m.name,
                "type": m.type_name,
                "extra_repr": m.extra_repr,
                "own_params": m.own_params,
                "total_params": m.total_params,
                "children": m.children,
                "same_as": m.same_as,
            }
            for m in report.modules.values()
        ],
        "parameters": [tensor_entry(p, summaries.get(p.name)) for p in report.parameters.values()],
        "buffers": [tensor_entry(b, summaries.get(b.name)) for b in report.buffers.values()],
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
) -> dict[str, Any]:
    """Report, statistics and diagnostics of ``model`` as JSON-ready data.

    ``loader`` reads the values of a lazily opened source's placeholders, one tensor at a time.
    """
    report = build_report(model)
    summaries = compute_model_statistics(model, report, state, bins=bins, loader=loader)
    return report_to_dict(report, summaries)
