"""What the Backward panel asks for, without Qt: the sample input, seed, loss, mode, accumulate.

:class:`BackwardState` holds the request and turns it into a
:class:`~paramscope.core.backward.backward.BackwardRequest` for ``backward.run``; the GUI panel binds
its widgets to these fields and runs the request in a worker. A script or a test builds the same
request without a window.

Example:
    >>> state = BackwardState(input_text="ones(1, 1)")
    >>> state.loss, state.mode, state.accumulate
    ('sum', 'as is', False)
"""

from __future__ import annotations

from typing import Any

import torch

from paramscope.core.backward.backward import BackwardRequest
from paramscope.core.backward.input_specs import parse_input_spec
from paramscope.core.backward.inputs import default_input
from paramscope.core.backward.losses import LOSSES
from paramscope.core.edit.session import Session
from paramscope.core.observable import Field, State

#: Module mode during the pass: ``train`` / ``eval`` switch it (and restore it after), "as is" not.
MODES: dict[str, bool | None] = {"as is": None, "train": True, "eval": False}
#: The input text while the tensors given to ``paramscope.explore(model, inputs)`` are used.
EXPLORE_INPUTS = "inputs given to explore()"
EXPLORE_NOTE = "the tensors passed to paramscope.explore(); type a spec to use others"


def explore_inputs(session: Session) -> tuple[torch.Tensor, ...] | None:
    """The tensors given to ``explore(model, inputs)``, or None when there are none (usable)."""
    inputs = session.opened.extras.get("inputs")
    if isinstance(inputs, torch.Tensor):
        return (inputs,)
    if isinstance(inputs, tuple | list) and inputs and all(isinstance(t, torch.Tensor) for t in inputs):
        return tuple(inputs)
    return None


class BackwardState(State):
    """The Backward request; :meth:`reset_input` fills in the input a model suggests."""

    input_text = Field("")  # an input spec (see paramscope.core.backward.inputs) or EXPLORE_INPUTS
    input_note = Field("")  # why that default input was chosen ("" when typed)
    seed = Field(0)  # of random inputs, cross-entropy labels and dropout
    loss = Field(next(iter(LOSSES)))
    mode = Field("as is")  # a key of MODES
    accumulate = Field(False)  # add to .grad as PyTorch does; False replaces it

    def __init__(self, **values: Any) -> None:
        super().__init__(**values)
        if self.mode not in MODES:
            raise ValueError(f"mode {self.mode!r}: one of {', '.join(MODES)}")

    def reset_input(self, session: Session) -> None:
        """The explore() inputs, else the input guessed from the model (with why)."""
        if explore_inputs(session) is not None:
            self.input_note = EXPLORE_NOTE
            self.input_text = EXPLORE_INPUTS
            return
        spec = default_input(session.model)
        self.input_note = spec.note or ""
        self.input_text = spec.text

    def request(self, session: Session) -> BackwardRequest:
        """What ``backward.run`` needs (raises ParamscopeError for an input it cannot parse)."""
        text = self.input_text.strip()
        inputs: Any = explore_inputs(session) if text == EXPLORE_INPUTS else None
        if inputs is None:
            inputs = parse_input_spec(text)
        return BackwardRequest(
            session.opened,
            inputs,
            loss=self.loss,
            accumulate=self.accumulate,
            seed=self.seed,
            train=MODES[self.mode],
        )
