"""Init rules applied: one seeded generator per request, one undoable command per rule.

A rule is ``SELECTOR=INIT(key=value,...)``: which tensors (:mod:`paramscope.core.init.selectors`),
which initializer (:mod:`paramscope.core.init.initializers`), parsed by
:mod:`paramscope.core.init.rule_parse` and checked by :mod:`paramscope.core.init.rule_plans` before
anything changes.

A request (one or more rules) owns one ``torch.Generator``, seeded once; tensors are initialized
rule by rule, each rule in the model's ``named_parameters()`` order, so the same seed and rules give
bit-identical tensors to a plain script calling ``torch.nn.init`` with that generator. Rules apply in
order: a later rule overwrites what an earlier one wrote, as the tutorial's loops do.
"""

from __future__ import annotations

import functools
import warnings
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING

import torch
from torch import nn

from paramscope.core.edit.commands import Command, TensorEditCommand
from paramscope.core.errors import ParamscopeError, RuleError
from paramscope.core.init.custom_init import CustomInitializer
from paramscope.core.init.initializers import TorchInitializer
from paramscope.core.init.rule_parse import InitRule
from paramscope.core.init.rule_plans import (
    Plan,
    RefusedError,
    RulePlan,
    UnmatchedRuleWarning,
    check_unmatched,
    module_tensors,
    plan,
)
from paramscope.core.init.selectors import Selector

if TYPE_CHECKING:
    from paramscope.core.edit.session import Session

# Re-exported for gui/init_panel.py and core/bench.py, which import them from here: InitRule, Selector.
__all__ = ["InitCommand", "InitRule", "Selector", "apply_rules", "build_commands", "make_generator",
           "preview_rules", "replay_code", "run_rule"]  # fmt: skip


def make_generator(seed: int | None) -> tuple[torch.Generator, int]:
    """A CPU generator seeded with ``seed`` (a fresh random seed if None) and the seed used."""
    generator = torch.Generator()
    if seed is None:
        seed = int(generator.seed())
    else:
        generator.manual_seed(int(seed))
    return generator, int(seed)


def run_rule(rule_plan: RulePlan, tensor_of: Callable[[str], torch.Tensor],
             module_of: Callable[[str], nn.Module], generator: torch.Generator) -> None:  # fmt: skip
    """Apply one planned rule with ``generator`` (tensors in plan order)."""
    initializer = rule_plan.initializer
    if initializer.acts_on_model:
        notes = initializer.apply_model(module_of(""), rule_plan.targets, rule_plan.kwargs, generator)  # type: ignore[attr-defined]
        rule_plan.run_notes = list(notes)
        return
    if getattr(initializer, "acts_on_module", False):
        for module_name in rule_plan.modules:
            initializer.apply_module(module_of(module_name), generator)  # type: ignore[attr-defined]
        return
    for hit in rule_plan.hits:
        initializer.apply(tensor_of(hit.name), rule_plan.kwargs, generator)


class InitCommand(TensorEditCommand):
    """An undoable init of the tensors of one rule, with the Python that replays it.

    Attributes:
        rule_plan: what it does. seed: the request's seed (the rules of one request share one
        generator). index: position of this rule in its request.
        replay_code: Python lines that repeat it on ``model`` (see :mod:`paramscope.core.edit.replay`).
    """

    def __init__(self, session: Session, rule_plan: RulePlan, generator: torch.Generator,
                 seed: int, index: int) -> None:  # fmt: skip
        self.rule_plan = rule_plan
        self.seed = seed
        self.index = index
        names = rule_plan.touched
        model = session.model

        def mutate() -> None:
            run_rule(rule_plan, session.tensor, model.get_submodule, generator)

        def compute(tensor_of: Callable[[str], torch.Tensor]) -> None:
            run_rule(rule_plan, tensor_of, model.get_submodule, generator)

        text = f"init {rule_plan.rule.label}"
        if rule_plan.initializer.takes_generator or rule_plan.modules or isinstance(rule_plan.initializer, CustomInitializer):
            text += f" (seed {seed})"
        # torch.nn.init functions write every element without reading: no copy is needed. They
        # see only the tensor, so they may run on fresh ones off the model (staged); a reset or a
        # user's function may read the live module or global state, and stays on the model.
        torch_init = isinstance(rule_plan.initializer, TorchInitializer)
        targets = [(n, session.tensor(n)) for n in names]
        self._dtypes = {name: tensor.dtype for name, tensor in targets}  # for the replay's lines
        super().__init__(
            text,
            targets,
            mutate,
            overwrites=torch_init,
            shared=session.shared_storage,
            compute=compute if torch_init else None,
        )

    @property
    def work(self) -> float:
        """In elements of a ``normal_`` edit: an orthogonal_ QR costs far more than its elements."""
        initializer = self.rule_plan.initializer
        return sum(initializer.work(tuple(s.before.shape)) for s in self._snapshots)

    @functools.cached_property
    def replay_code(self) -> str:  # built when a script is exported, not on every apply
        return replay_code(self.rule_plan, self.seed, first_of_request=self.index == 0, dtypes=self._dtypes)


def replay_code(
    rule_plan: RulePlan, seed: int, first_of_request: bool, dtypes: Mapping[str, torch.dtype] | None = None
) -> str:
    """Python that repeats ``rule_plan``; ``T(name)`` is a tensor, ``model`` the model, ``g`` the
    generator. ``dtypes``: the targets' (see ``drawn_in_float32``)."""
    lines = [f"# init {rule_plan.rule.label}"]
    if first_of_request:
        lines.append(f"g = torch.Generator().manual_seed({seed})")
    initializer = rule_plan.initializer
    if isinstance(initializer, CustomInitializer):
        source = initializer.source
        if source.kind == "text":
            lines.append(f"custom = custom_from_text({source.location!r}, {source.function!r})")
        elif source.kind == "file":
            lines.append(f"custom = custom_from_file({source.location!r}, {source.function!r})")
        else:
            lines.append(f"custom = custom_from_module({source.location!r}, {source.function!r})")
    if initializer.acts_on_model:
        lines += initializer.replay_model_lines(rule_plan.targets, rule_plan.kwargs)  # type: ignore[attr-defined]
    elif getattr(initializer, "acts_on_module", False):
        for module_name in rule_plan.modules:
            lines += initializer.replay_module_lines(f"model.get_submodule({module_name!r})")  # type: ignore[attr-defined]
    else:
        for hit in rule_plan.hits:
            lines += initializer.replay_lines(f"T({hit.name!r})", rule_plan.kwargs, (dtypes or {}).get(hit.name))
    return "\n".join(lines)


def _checked_plan(session: Session, rules: Sequence[InitRule | str], skip_refused: bool) -> Plan:
    the_plan = plan(session, rules)
    for message in check_unmatched(the_plan, session.report, skip_refused):
        warnings.warn(message, UnmatchedRuleWarning, stacklevel=3)
    if skip_refused:
        the_plan.skipped = the_plan.drop_refused()
    if not the_plan.ok:
        raise RefusedError(the_plan.refusal_message(), the_plan)
    return the_plan


def build_commands(session: Session, rules: Sequence[InitRule | str], seed: int | None = None,
                   skip_refused: bool = False) -> tuple[Plan, list[InitCommand]]:  # fmt: skip
    """Plan ``rules`` and build their commands (not yet executed).

    Raises:
        RuleError: a bad rule. RefusedError: some target refuses (its ``plan`` says which).
    """
    the_plan = _checked_plan(session, rules, skip_refused)
    generator, used_seed = make_generator(seed)
    effective = [rp for rp in the_plan.rules if rp.hits]  # a rule that hits nothing changes nothing
    for rule_plan in effective:  # a lazily opened model's targets: their values read now
        for name in rule_plan.touched:
            session.editable(name)
    commands = [
        InitCommand(session, rule_plan, generator, used_seed, index)
        for index, rule_plan in enumerate(effective)
    ]
    return the_plan, commands


def apply_rules(session: Session, rules: Sequence[InitRule | str], seed: int | None = None,
                skip_refused: bool = False) -> list[Command]:  # fmt: skip
    """Apply ``rules`` in order through ``session.execute`` (one undoable command per rule).

    All or nothing: every target is checked first; if any refuses, nothing is applied and
    :class:`RefusedError` names each refused tensor and why (with ``skip_refused`` the refused
    tensors are left out and the others applied). If a rule fails while running, the rules
    already applied are undone.

    Example:
        >>> apply_rules(session, ["*.weight=normal(std=0.01)", "*.bias=constant(val=0)"], seed=0)
    """
    _, commands = build_commands(session, rules, seed, skip_refused)
    done: list[Command] = []
    for command in commands:
        try:
            session.execute(command)
        except ParamscopeError:
            _undo_all(session, done)
            raise
        except Exception as exc:
            _undo_all(session, done)
            raise RuleError(f"{command.text}: {type(exc).__name__}: {exc}") from exc
        done.append(command)
    return done


def _undo_all(session: Session, done: list[Command]) -> None:
    for _ in done:
        session.undo()


def preview_rules(session: Session, rules: Sequence[InitRule | str], seed: int | None = None,
                  skip_refused: bool = False) -> tuple[Plan, dict[str, torch.Tensor]]:  # fmt: skip
    """The tensors ``rules`` would produce, computed on copies; the model is not touched.

    With the same seed the preview is bit-identical to what :func:`apply_rules` writes.
    """
    import copy

    the_plan = _checked_plan(session, rules, skip_refused)
    generator, _ = make_generator(seed)
    copies: dict[str, torch.Tensor] = {}

    def tensor_of(name: str) -> torch.Tensor:
        if name not in copies:  # (a lazily opened model's values: read, not kept in the model)
            live = session.tensor(name)
            copies[name] = session.values(name) if live.device.type == "meta" else live.detach().clone()
        return copies[name]

    def module_of(module_name: str) -> nn.Module:
        for other in module_tensors(session.model, module_name):  # a reset needs the values in place
            session.editable(session.canonical(other))
        original = session.model.get_submodule(module_name)
        try:
            module = copy.deepcopy(original)
        except Exception as exc:  # e.g. it keeps a tensor with a grad_fn (a cached activation)
            where = module_name or "(root)"
            raise RuleError(
                f"cannot preview reset_parameters() of {where}: the module cannot be copied "
                f"({type(exc).__name__}: {exc}); Apply still works and can be undone"
            ) from exc
        # After the copy is reset, read its tensors back under the model's canonical names.
        pending.append((module_name, module, original))
        return module

    pending: list[tuple[str, nn.Module, nn.Module]] = []
    with torch.no_grad():
        for rule_plan in the_plan.rules:
            run_rule(rule_plan, tensor_of, module_of, generator)
            for module_name, module, _original in pending:
                prefix = f"{module_name}." if module_name else ""
                named = list(module.named_parameters()) + list(module.named_buffers())
                for local, tensor in named:
                    copies[session.canonical(prefix + local)] = tensor.detach().clone()
            pending.clear()
    return the_plan, copies
