"""Things worth a user's attention, found from the report (and statistics when known).

Order matters: unregistered tensors come first, since they are the silent bug (the tutorial's
``weight2`` is never trained, saved or moved to the GPU).
"""

from __future__ import annotations

from collections.abc import Mapping
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
    found: list[Diagnostic] = []
    for item in report.unregistered:
        name = f"{item.module}.{item.attribute}" if item.module else item.attribute
        found.append(Diagnostic(WARNING, "unregistered", (name,), item.message))
    for info in list(report.parameters.values()) + list(report.buffers.values()):
        summary = (summaries or {}).get(info.name)
        if summary is not None and summary.stats.nonfinite:
            s = summary.stats
            found.append(
                Diagnostic(ERROR, "nonfinite", (info.name,), f"{info.name} has {s.nan} NaN and {s.inf} Inf values")
            )
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
