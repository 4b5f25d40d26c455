"""The Qt-free state of one open model: what every front end (GUI, CLI, API) works on.

A :class:`Session` holds the opened model, its structural report, the undo stack, a cache of
tensor summaries and of gradient norms, what is selected, and which long work is using the model
(busy). Every change goes through :meth:`Session.execute` as a command; listeners hear which
tensors changed, so views refresh only what they must. The GUI mirrors a Session (Qt signals
from these listeners), it never keeps model state of its own.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping

import numpy as np
import torch
from torch import nn

from paramscope.core.edit.commands import Command, CommandStack
from paramscope.core.model.diagnostics import (
    Diagnostic,
    nonfinite_diagnostics,
    structure_diagnostics,
    unregistered_diagnostics,
)
from paramscope.core.model.model_statistics import (
    NO_NUMBER,
    SORTABLE_STATS,
    StatColumns,
    TensorSummary,
    named_tensors,
    stat_columns,
    summarize,
)
from paramscope.core.model.report import ModelReport, build_report
from paramscope.core.sources.sources import OpenedModel
from paramscope.core.tasks import TaskState, advance, part

ChangeListener = Callable[[tuple[str, ...]], None]
SelectionListener = Callable[[str, object], None]  # ("module" | "tensor" | "group", the new value)
BusyListener = Callable[[bool, str], None]  # (busy, what): long work started or ended

# Above this many bytes of tensors, statistics are computed for the selected tensor only, so
# browsing a checkpoint larger than memory reads only what the user looks at.
ON_DEMAND_BYTES = 1 << 30


class Session:
    def __init__(self, opened: OpenedModel, stack: CommandStack | None = None, state: TaskState | None = None) -> None:
        self.opened = opened
        self.stack = stack if stack is not None else CommandStack()
        self._read_structure(state)  # (state: progress and cancel of the report)
        # keyed by names of report.order: complete when as long (missing_summaries)
        self._summaries: dict[str, TensorSummary] = {}
        self._nonfinite: set[str] = set()  # canonical names whose summary counts NaN or Inf
        # keyed by names of report.parameters, see grad_norms. Those without a gradient are known
        # at once: a model's first user is the worker that opens it, so its .grad are read there,
        # not on the GUI thread (a pass over a checkpoint's million parameters there took 0.7 s).
        self._grad_norms: dict[str, float | None] = self._none_without_grad()
        self.grad_norms_version = 0  # bumped when known norms are replaced or forgotten
        self._previous: dict[str, TensorSummary] = {}
        # Values from before the last change, summarized only if a view asks (no work on apply).
        self._previous_values: dict[str, torch.Tensor] = {}
        self._listeners: list[ChangeListener] = []
        #: bumped at every change of tensors or structure: work started before is stale
        self.generation = 0
        self.selected_module = ""  # qualified name, "" for the root
        self.selected_tensor: str | None = None  # canonical name
        self.selected_group = -1  # index into report.tied_groups, -1 for none
        self._selection_listeners: list[SelectionListener] = []
        self._busy: set[str] = set()  # long work using the model now ("backward", "files")
        self._busy_listeners: list[BusyListener] = []

    @property
    def model(self) -> nn.Module:
        return self.opened.model

    def add_listener(self, listener: ChangeListener) -> None:
        """``listener(names)`` runs after tensors change (names empty: the structure changed)."""
        self._listeners.append(listener)

    def remove_listener(self, listener: ChangeListener) -> None:
        if listener in self._listeners:
            self._listeners.remove(listener)

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

    def checkable(self, name: str) -> torch.Tensor:
        """The live tensor, or for a lazily opened placeholder a stand-in of its shape and dtype
        holding one element (zero strides): what an init's checks look at, values unread.

        Planning an init (the Initialize panel plans one at every selection) read a 1.85 GB
        embedding from disk and kept it in the model; the values are read when applied."""
        tensor = self.tensor(name)
        if tensor.device.type != "meta" or self.opened.loader is None:
            return tensor
        return torch.empty_strided(tensor.shape, (0,) * tensor.dim(), dtype=tensor.dtype)

    def unread_bytes(self, names: Iterable[str]) -> int:
        """Bytes of ``names`` a lazily opened model has still to read from its files."""
        if self.opened.loader is None:
            return 0
        return sum(self.report.tensor(n).nbytes for n in names if self.tensor(n).device.type == "meta")

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
                self.store_summaries({canonical: summarize(self.values(canonical))})
        return self._summaries[canonical]

    def store_summaries(self, summaries: dict[str, TensorSummary], columns: StatColumns | None = None) -> None:
        """Keep summaries computed elsewhere (a worker), with their ``columns`` if it made them."""
        columns = columns if columns is not None else stat_columns(self.report.order, summaries)
        if len(columns.positions) != len(summaries):  # (a name of another report: not kept)
            summaries = {name: summary for name, summary in summaries.items() if name in self.report.order}
        self._summaries.update(summaries)
        for statistic, column in self._columns.items():
            column[columns.positions] = columns.values[statistic]
        if columns.nonfinite or (self._nonfinite and not self._nonfinite.isdisjoint(summaries)):
            self._nonfinite.difference_update(summaries)
            self._nonfinite |= columns.nonfinite
            self._diagnostics = None

    @property
    def summaries(self) -> Mapping[str, TensorSummary]:
        """The known summaries by canonical name (read only: views read many at once from here)."""
        return self._summaries

    def stat_column(self, statistic: str) -> np.ndarray:
        """``statistic`` (one of ``SORTABLE_STATS``) of every tensor by position (``report.order``),
        :data:`NO_NUMBER` where it is not known; read only. Kept up to date from the first call on
        (a pass over the summaries; later ones come as arrays from the worker that made them)."""
        column = self._columns.get(statistic)
        if column is None:
            if statistic not in SORTABLE_STATS:
                raise ValueError(f"{statistic!r} is not one of {', '.join(SORTABLE_STATS)}")
            column = np.full(len(self.report.order), NO_NUMBER)
            known = stat_columns(self.report.order, self._summaries, [statistic])
            column[known.positions] = known.values[statistic]
            self._columns[statistic] = column
        return column

    def missing_summaries(self) -> list[str]:
        """Canonical names of the tensors without a summary, parameters first, in report order."""
        summaries, order = self._summaries, self.report.order
        if len(summaries) == len(order):  # (its names are names of order) the usual answer at once
            return []
        return [name for name in order if name not in summaries]

    @property
    def nonfinite(self) -> frozenset[str]:
        """Canonical names of the tensors whose known summary counts NaN or Inf values."""
        return frozenset(self._nonfinite)

    def diagnostics(self) -> list[Diagnostic]:
        """:func:`~paramscope.core.model.diagnostics.diagnose` of the model and its known summaries.

        The same list object until the structure or a tensor's NaN/Inf counts change: the
        structure's part is made once, so a batch of summaries costs a pass over the batch only.
        """
        if self._diagnostics is None:
            if self._structure_diagnostics is None:
                report = self.report
                self._structure_diagnostics = (unregistered_diagnostics(report), structure_diagnostics(report))
            head, tail = self._structure_diagnostics
            order = self.report.order
            flagged = sorted((n for n in self._nonfinite if n in order), key=order.__getitem__)
            self._diagnostics = head + nonfinite_diagnostics(self.report, self._summaries, flagged) + tail
        return self._diagnostics

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
        summaries, previous, previous_values = self._summaries, self._previous, self._previous_values
        canonical_of = self.report.alias_to_name.get  # (locals: 100,000 names on every undo)
        for name in command.touched:
            canonical = canonical_of(name, name)
            known = summaries.get(canonical)
            previous_values.pop(canonical, None)
            if known is not None:
                previous[canonical] = known
                continue
            previous.pop(canonical, None)
            values = command.values(name, after)
            if values is not None:
                previous_values[canonical] = values

    def _after_change(self, names: Iterable[str]) -> None:
        touched = tuple(self.canonical(n) for n in names)
        for canonical in touched:
            self._summaries.pop(canonical, None)
        if self._columns:
            positions = [self.report.order[n] for n in touched if n in self.report.order]
            for column in self._columns.values():
                column[positions] = NO_NUMBER
        if not self._nonfinite.isdisjoint(touched):  # its NaN/Inf are not known any more
            self._nonfinite.difference_update(touched)
            self._diagnostics = None
        self._gradients_may_have_changed(touched)
        self.notify(touched)

    def notify(self, names: tuple[str, ...]) -> None:
        self.generation += 1
        for listener in list(self._listeners):
            listener(names)

    def _read_structure(self, state: TaskState | None = None) -> None:
        """The report and what follows from it; it changes only when the structure does."""
        self._places: dict[int, list[tuple[dict, str]]] | None = None  # see _placeholder_places
        self.report: ModelReport = build_report(self.opened.model, part(state, 0.0, 0.75))
        advance(state, 0.75, "indexing the tensors")
        # Made here, in the worker that opens a file, rather than by the first view that asks.
        self.report.order, self.report.module_order, self.report.module_rows, self.report.unique_params  # noqa: B018
        advance(state, 0.85, "indexing the tensors")
        self._structure_diagnostics: tuple[list[Diagnostic], list[Diagnostic]] | None = None
        self._columns: dict[str, np.ndarray] = {}  # see stat_column
        self._diagnostics: list[Diagnostic] | None = None
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
        self._nonfinite.clear()
        self._previous.clear()
        self._previous_values.clear()
        self._grad_norms = self._none_without_grad()
        self.grad_norms_version += 1
        self.notify(())

    @property
    def modified(self) -> bool:
        return not self.stack.is_clean

    # --- selection -------------------------------------------------------------------------
    def add_selection_listener(self, listener: SelectionListener) -> None:
        """``listener(what, value)`` runs after the selected module, tensor or tied group changes."""
        self._selection_listeners.append(listener)

    def remove_selection_listener(self, listener: SelectionListener) -> None:
        if listener in self._selection_listeners:
            self._selection_listeners.remove(listener)

    def _selected(self, what: str, value: object) -> None:
        for listener in list(self._selection_listeners):
            listener(what, value)

    def select_module(self, name: str) -> bool:
        """Select the module ``name`` ("" for the root); True when the selection changed."""
        if name == self.selected_module:
            return False
        self.selected_module = name
        self._selected("module", name)
        return True

    def select_tensor(self, name: str) -> bool:
        """Select the tensor ``name`` (any alias; kept as its canonical name)."""
        canonical = self.canonical(name)
        if canonical == self.selected_tensor:
            return False
        self.selected_tensor = canonical
        self._selected("tensor", canonical)
        return True

    def select_tied_group(self, index: int) -> bool:
        """Select ``report.tied_groups[index]`` (-1: none)."""
        if index == self.selected_group:
            return False
        self.selected_group = index
        self._selected("group", index)
        return True

    # --- busy ------------------------------------------------------------------------------
    def add_busy_listener(self, listener: BusyListener) -> None:
        """``listener(busy, what)`` runs when long work using the model starts or ends."""
        self._busy_listeners.append(listener)

    def remove_busy_listener(self, listener: BusyListener) -> None:
        if listener in self._busy_listeners:
            self._busy_listeners.remove(listener)

    def set_busy(self, busy: bool, what: str) -> bool:
        """Record that long work ``what`` started (or ended) using the model; True if news."""
        if busy == (what in self._busy):
            return False
        if busy:
            self._busy.add(what)
        else:
            self._busy.discard(what)
        for listener in list(self._busy_listeners):
            listener(busy, what)
        return True

    @property
    def busy_tasks(self) -> frozenset[str]:
        return frozenset(self._busy)

    @property
    def model_busy(self) -> str | None:
        """What long work is using the model now (edits wait until it is done), if any."""
        return ", ".join(sorted(self._busy)) or None

    # --- gradient norms --------------------------------------------------------------------
    @property
    def grad_norms(self) -> dict[str, float | None]:
        """Known L2 norms of parameters' ``.grad`` (None: no gradient), by canonical name.

        Views read them, they never compute them: a backward stores its own
        (:meth:`replace_grad_norms`), and what is missing (:meth:`missing_grad_norms`) is
        computed by a worker and kept with :meth:`store_grad_norms`.
        """
        return self._grad_norms

    def replace_grad_norms(self, norms: dict[str, float | None]) -> None:
        """Every parameter's norm after a backward (or zero grad); work started before is stale."""
        params = self.report.parameters
        self._grad_norms = {name: v for name, v in ((self.canonical(n), v) for n, v in norms.items()) if name in params}
        self.grad_norms_version += 1

    def forget_grad_norms(self, names: Iterable[str] | None = None) -> None:
        """``.grad`` of ``names`` (None: of every parameter) changed in a way nobody measured."""
        if names is None:
            self._grad_norms.clear()
        else:
            for name in names:
                self._grad_norms.pop(self.canonical(name), None)
        self.grad_norms_version += 1

    def store_grad_norms(self, norms: dict[str, float | None], version: int) -> bool:
        """Keep norms computed elsewhere from the gradients as they were at ``version``.

        False (nothing kept) when the gradients changed since: those numbers are stale.
        """
        if version != self.grad_norms_version:
            return False
        params = self.report.parameters
        self._grad_norms.update((name, v) for name, v in norms.items() if name in params)
        return True

    def gradients(self, names: Iterable[str]) -> dict[str, torch.Tensor | None]:
        """The ``.grad`` of each canonical parameter name now (taken on the thread that owns the
        model: a worker reading ``param.grad`` while Zero grad sets it crashed the process)."""
        tensors = self._tensors
        return {name: tensors[name].grad for name in names}

    def has_grad(self, name: str) -> bool:
        """Whether the parameter ``name`` has its ``.grad`` set now (read, not taken from the
        norms: code outside the window may have run backward)."""
        tensor = self._tensors.get(self.canonical(name))  # (a name of a report rebuilt since: none)
        return tensor is not None and tensor.grad is not None

    def missing_grad_norms(self) -> list[str]:
        norms, params = self._grad_norms, self.report.parameters
        if len(norms) == len(params):  # (its names are names of parameters) the usual answer at once
            return []
        return [name for name in params if name not in norms]

    def _none_without_grad(self) -> dict[str, float | None]:
        """``None`` for every parameter that has no ``.grad``."""
        tensors = self._tensors
        return {name: None for name in self.report.parameters if tensors[name].grad is None}

    def _gradients_may_have_changed(self, names: tuple[str, ...]) -> None:
        """An edit may replace a parameter (and its ``.grad``): no gradient is known at once,
        any other is measured again."""
        unknown = []
        for name in names:
            if name not in self.report.parameters:
                continue
            if self._tensors[name].grad is None:
                self._grad_norms[name] = None
            elif name in self._grad_norms:
                unknown.append(name)
        if unknown:
            self.forget_grad_norms(unknown)
