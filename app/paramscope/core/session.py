"""The Qt-free state of one open model: what every front end (GUI, CLI, API) works on.

A :class:`Session` holds the opened model, its structural report, the undo stack and a cache of
tensor summaries. Every change goes through :meth:`Session.execute` as a command; listeners hear
which tensors changed, so views refresh only what they must. The GUI wraps a Session, it never
keeps model state of its own.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import torch
from torch import nn

from paramscope.core.commands import Command, CommandStack
from paramscope.core.model_statistics import TensorSummary, named_tensors, summarize
from paramscope.core.report import ModelReport, build_report
from paramscope.core.sources import OpenedModel

ChangeListener = Callable[[tuple[str, ...]], None]

# Above this many bytes of tensors, statistics are computed for the selected tensor only, so
# browsing a checkpoint larger than memory reads only what the user looks at.
ON_DEMAND_BYTES = 1 << 30


class Session:
    def __init__(self, opened: OpenedModel, stack: CommandStack | None = None) -> None:
        self.opened = opened
        self.stack = stack if stack is not None else CommandStack()
        self._read_structure()
        self._summaries: dict[str, TensorSummary] = {}
        self._previous: dict[str, TensorSummary] = {}
        # Values from before the last change, summarized only if a view asks (no work on apply).
        self._previous_values: dict[str, torch.Tensor] = {}
        self._listeners: list[ChangeListener] = []

    @property
    def model(self) -> nn.Module:
        return self.opened.model

    def add_listener(self, listener: ChangeListener) -> None:
        """``listener(names)`` runs after tensors change (names empty: the structure changed)."""
        self._listeners.append(listener)

    def tensor(self, name: str) -> torch.Tensor:
        """The live tensor (parameter or buffer) under any of its names."""
        return self._tensors[self.report.alias_to_name.get(name, name)]

    def values(self, name: str) -> torch.Tensor:
        """The tensor's values: the live tensor, or for a lazily opened source, loaded on demand."""
        tensor = self.tensor(name)
        if tensor.device.type == "meta" and self.opened.loader is not None:
            return self.opened.loader(self.canonical(name))
        return tensor

    def editable(self, name: str) -> torch.Tensor:
        """The live tensor, its values read first where it is a lazily opened placeholder.

        An edit needs real values: the placeholder is replaced by the loaded tensor under every
        name it was registered as (so ties stay ties). Nothing else changes.
        """
        canonical = self.canonical(name)
        old = self._tensors[canonical]
        if old.device.type != "meta" or self.opened.loader is None:
            return old
        values = self.opened.loader(canonical)
        new = nn.Parameter(values, old.requires_grad) if isinstance(old, nn.Parameter) else values
        for store, key in self._placeholder_places().pop(id(old), []):
            store[key] = new
        self._tensors[canonical] = new
        return new

    def _placeholder_places(self) -> dict[int, list[tuple[dict, str]]]:
        """Where each placeholder is registered (one walk of the model, then kept): an init of
        every tensor of a lazily opened model reads them one by one."""
        if self._places is None:
            self._places = {}
            for module in self.model.modules():
                for store in (module._parameters, module._buffers):
                    for key, value in store.items():
                        if value is not None and value.device.type == "meta":
                            self._places.setdefault(id(value), []).append((store, key))
        return self._places

    def canonical(self, name: str) -> str:
        return self.report.alias_to_name.get(name, name)

    # --- summaries -------------------------------------------------------------------------
    def summary(self, name: str) -> TensorSummary | None:
        """Cached summary of ``name``, or None if not computed since its last change."""
        return self._summaries.get(self.canonical(name))

    def previous_summary(self, name: str) -> TensorSummary | None:
        """Summary from before the last change of ``name`` (for before/after plots)."""
        canonical = self.canonical(name)
        if canonical not in self._previous and canonical in self._previous_values:
            with torch.no_grad():
                self._previous[canonical] = summarize(self._previous_values.pop(canonical))
        return self._previous.get(canonical)

    def ensure_summary(self, name: str) -> TensorSummary:
        canonical = self.canonical(name)
        if canonical not in self._summaries:
            with torch.no_grad():
                self._summaries[canonical] = summarize(self.values(canonical))
        return self._summaries[canonical]

    def store_summaries(self, summaries: dict[str, TensorSummary]) -> None:
        """Keep summaries computed elsewhere (a worker)."""
        self._summaries.update(summaries)

    # --- changes ---------------------------------------------------------------------------
    def execute(self, command: Command) -> None:
        """Do ``command`` through the undo stack; listeners hear what changed."""
        self.stack.push(command)
        self._keep_previous(command, after=False)
        self._after_change(command.touched)

    def undo(self) -> Command | None:
        command = self.stack.undo()
        if command is not None:
            self._keep_previous(command, after=True)  # what it was before the undo
            self._after_change(command.touched)
        return command

    def redo(self) -> Command | None:
        command = self.stack.redo()
        if command is not None:
            self._keep_previous(command, after=False)
            self._after_change(command.touched)
        return command

    def _keep_previous(self, command: Command, after: bool) -> None:
        """Remember the values the tensors had before ``command`` changed them (its ``before``,
        or its ``after`` when it was undone): a summary already known is kept as it is."""
        for name in command.touched:
            canonical = self.canonical(name)
            known = self._summaries.get(canonical)
            self._previous.pop(canonical, None)
            self._previous_values.pop(canonical, None)
            if known is not None:
                self._previous[canonical] = known
                continue
            values = command.values(name, after)
            if values is not None:
                self._previous_values[canonical] = values

    def _after_change(self, names: Iterable[str]) -> None:
        touched = tuple(self.canonical(n) for n in names)
        for canonical in touched:
            self._summaries.pop(canonical, None)
        self.notify(touched)

    def notify(self, names: tuple[str, ...]) -> None:
        for listener in list(self._listeners):
            listener(names)

    def _read_structure(self) -> None:
        """The report and what follows from it; it changes only when the structure does."""
        self._places: dict[int, list[tuple[dict, str]]] | None = None  # see _placeholder_places
        self.report: ModelReport = build_report(self.opened.model)
        self._tensors = named_tensors(self.opened.model, self.report)
        infos = [*self.report.parameters.values(), *self.report.buffers.values()]
        #: statistics per selected tensor rather than for all: a huge or lazily opened source
        self.stats_on_demand = self.opened.loader is not None or sum(i.nbytes for i in infos) > ON_DEMAND_BYTES
        #: names (and aliases) of tensors that share storage with another (views): commands
        #: must edit these in place rather than swap their data
        group_names = {n for g in self.report.tied_groups if g.kind == "shared storage" for n in g.names}
        self.shared_storage = frozenset(group_names | {self.canonical(n) for n in group_names})

    def rebuild(self) -> None:
        """Re-read the structure (after a lazy forward materialized parameters, or a load)."""
        self._read_structure()
        self._summaries.clear()
        self._previous.clear()
        self._previous_values.clear()
        self.notify(())

    @property
    def modified(self) -> bool:
        return not self.stack.is_clean
