"""Several commands done and undone as one step (a preset's rules: one Undo takes them all back).

The rules of one request are built together (:func:`paramscope.core.init.rules.build_commands`), so
each command recorded its "before" when the request was planned. Two rules hitting the same
tensor (GPT-2's ``weights=normal`` and then its residual projections) are therefore only right
when undone together, in reverse order: undoing the second alone would put back the values from
before the *first*. A group keeps them together.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from paramscope.core.edit.commands import Command


class CommandGroup(Command):
    """``commands`` in order as one undoable change; undo runs them backwards.

    If a command fails while the group is done, those already done are undone and the error
    propagates, so the model is as it was.

    Example:
        >>> _, commands = build_commands(session, ["weights=normal(std=0.02)", "biases=zeros"], seed=0)
        >>> session.execute(CommandGroup("preset gpt2", commands))  # doctest: +SKIP
    """

    def __init__(self, text: str, commands: Sequence[Command]) -> None:
        if not commands:
            raise ValueError(f"{text}: a group needs at least one command")
        self.text = text
        self.commands = list(commands)

    def do(self) -> None:
        done: list[Command] = []
        try:
            for command in self.commands:
                command.do()
                done.append(command)
        except BaseException:
            for command in reversed(done):
                command.undo()
            raise

    def undo(self) -> None:
        for command in reversed(self.commands):
            command.undo()

    @property
    def nbytes(self) -> int:
        return sum(c.nbytes for c in self.commands)

    @property
    def touched(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(n for c in self.commands for n in c.touched))

    def values(self, name: str, after: bool) -> torch.Tensor | None:
        """Before: the first command's before of ``name``; after: the last command's after."""
        order = reversed(self.commands) if after else iter(self.commands)
        for command in order:
            if name in command.touched:
                return command.values(name, after)
        return None

    @property
    def replay_code(self) -> str | None:
        """The members' replay lines in order (None when one of them cannot be replayed)."""
        codes = [getattr(c, "replay_code", None) for c in self.commands]
        if not all(isinstance(code, str) for code in codes):
            return None
        return "\n".join(codes)  # type: ignore[arg-type]
