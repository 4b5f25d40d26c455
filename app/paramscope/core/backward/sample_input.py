"""A sample batch large enough to measure a standard deviation on.

:func:`paramscope.core.backward.inputs.default_input` guesses the model's input with a batch of 2 (the
tutorial's ``rand(2, 4)``): enough to run backward, too few values for a std that data-dependent
initialization (LSUV rescales each layer until its output std is 1 ± 0.05) and a comparison of
schemes rely on. Mishkin & Matas 2016 use a mini-batch (§2); this module enlarges the guessed
batch to :data:`BATCH`, keeping the input small enough to run at once on a CPU.
"""

from __future__ import annotations

import dataclasses
import math

from torch import nn

from paramscope.core.backward.input_specs import InputSpec, TensorItem
from paramscope.core.backward.inputs import default_input

BATCH = 64
MAX_ELEMENTS = 1 << 20  # elements of all inputs together; the batch shrinks to stay below


def sample_batch(spec: InputSpec, batch: int = BATCH, max_elements: int = MAX_ELEMENTS) -> InputSpec:
    """``spec`` with its first dimension raised to ``batch`` where all inputs share it.

    Inputs read from a file, scalars and inputs whose first sizes differ (the first dimension
    is then not a batch) are left as they are. The batch never shrinks below the guessed one.

    Example:
        >>> sample_batch(InputSpec.parse("rand(2,64)")).text
        'rand(64, 64)'
    """
    items = spec.items
    if not items or not all(isinstance(i, TensorItem) and i.shape for i in items):
        return spec
    firsts = {i.shape[0] for i in items}  # type: ignore[union-attr]
    if len(firsts) != 1:
        return spec
    first = firsts.pop()
    per_sample = sum(math.prod(i.shape[1:]) for i in items)  # type: ignore[union-attr]
    wanted = max(first, min(batch, max_elements // max(per_sample, 1)))
    if wanted == first:
        return spec
    grown = tuple(dataclasses.replace(i, shape=(wanted, *i.shape[1:])) for i in items)  # type: ignore[union-attr, type-var]
    return dataclasses.replace(spec, items=grown)


def sample_input_text(model: nn.Module) -> str:
    """The model's guessed input with a batch to measure statistics on, as an input spec."""
    return sample_batch(default_input(model)).text
