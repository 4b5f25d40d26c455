"""Things worth a user's attention, found from the report (and statistics when known).

Order matters: unregistered tensors come first, since they are the silent bug (the tutorial's
``weight2`` is never trained, saved or moved to the GPU).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from paramscope.core.model.model_statistics import TensorSummary
from paramscope.core.model.report import ModelReport

ERROR, WARNING, INFO = "error", "warning", "info"


@dataclass(frozen=True)
class Diagnostic:
    severity: str  # "error", "warning" or "info"
    kind: str  # short machine-readable tag
    names: tuple[str, ...]  # tensor or module names it concerns
    message: str

    def to_dict(self) -> dict[str, object]:
        return {"severity": self.severity, "kind": self.kind, "names": list(self.names), "message": self.message}


def diagnose(report: ModelReport, summaries: Mapping[str, TensorSummary] | None = None) -> list[Diagnostic]:
    """Every diagnostic, in the order shown: unregistered tensors, NaN/Inf, then the structure's."""
    names = [*report.parameters, *report.buffers]
    return unregistered_diagnostics(report) + nonfinite_diagnostics(report, summaries or {}, names) + structure_diagnostics(report)


def unregistered_diagnostics(report: ModelReport) -> list[Diagnostic]:
    found: list[Diagnostic] = []
    for item in report.unregistered:
        name = f"{item.module}.{item.attribute}" if item.module else item.attribute
        found.append(Diagnostic(WARNING, "unregistered", (name,), item.message))
    return found


def nonfinite_diagnostics(
    report: ModelReport, summaries: Mapping[str, TensorSummary], names: Iterable[str]
) -> list[Diagnostic]:
    """NaN/Inf of the tensors ``names`` (canonical, in the order to list them) whose summary is known."""
    found: list[Diagnostic] = []
    for name in names:
        summary = summaries.get(name)
        if summary is not None and summary.stats.nonfinite:
            s = summary.stats
            found.append(Diagnostic(ERROR, "nonfinite", (name,), f"{name} has {s.nan} NaN and {s.inf} Inf values"))
    return found


def structure_diagnostics(report: ModelReport) -> list[Diagnostic]:
    """What the structure alone says (lazy, frozen, non-persistent, tied): the same until it changes."""
    found: list[Diagnostic] = []
    for info in report.parameters.values():
        if info.shape is None:
            found.append(
                Diagnostic(INFO, "lazy", (info.name,), f"{info.name} is uninitialized (lazy): run a forward to give it a shape")
            )
        if not info.requires_grad:
            found.append(Diagnostic(INFO, "frozen", (info.name,), f"{info.name} is frozen (requires_grad=False)"))
    for info in report.buffers.values():
        if not info.persistent:
            found.append(
                Diagnostic(INFO, "non_persistent", (info.name,), f"{info.name} is a non-persistent buffer: state_dict() leaves it out")
            )
    for group in report.tied_groups:
        found.append(Diagnostic(INFO, "tied", group.names, f"tied ({group.kind}): " + ", ".join(group.names)))
    return found
