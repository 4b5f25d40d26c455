"""What a selected tied group highlights: the tensors it names and the modules holding them."""

from __future__ import annotations

from paramscope.core.model.report import ModelReport


def tied_tensors(report: ModelReport, group_index: int) -> frozenset[str]:
    """Canonical names of the tensors in group ``group_index`` (-1 or out of range: none)."""
    if not 0 <= group_index < len(report.tied_groups):
        return frozenset()
    return frozenset(report.alias_to_name.get(n, n) for n in report.tied_groups[group_index].names)


def tied_modules(report: ModelReport, group_index: int) -> frozenset[str]:
    """Modules that hold one of the group's names directly (``0`` and ``1`` for ``0.weight = 1.weight``)."""
    if not 0 <= group_index < len(report.tied_groups):
        return frozenset()
    return frozenset(name.rpartition(".")[0] for name in report.tied_groups[group_index].names)
