"""Details of a gradient's summary that a plausible slip would change without failing a coarser test:
a row with some zeros is not dead, max |g| can come from the minimum, the last use is the derived one."""

from __future__ import annotations

import torch
from torch import nn

from paramscope.core.backward.backward import run_backward
from paramscope.core.backward.backward_hooks import Recorder


class HalfOutput(nn.Module):
    """Only the first output feature reaches the loss: row 1 of the weight's gradient is zero."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(2, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(x) * torch.tensor([1.0, 0.0])


def test_a_row_with_some_zeros_is_not_dead_only_an_all_zero_row_is() -> None:
    model = HalfOutput()
    result = run_backward(model, "ones(1, 2)")
    grad = model.fc.weight.grad
    assert torch.equal(grad[0], torch.ones(2)) and torch.equal(grad[1], torch.zeros(2))
    assert result.parameters["fc.weight"].dead_rows == (1,)
    model = HalfOutput()
    x = torch.tensor([[1.0, 0.0]])  # row 0 becomes [1, 0]: a zero, yet the unit is alive
    result = run_backward(model, x)
    assert model.fc.weight.grad[0, 1] == 0 and model.fc.weight.grad[0, 0] == 1
    assert result.parameters["fc.weight"].dead_rows == (1,)


def test_max_abs_is_the_largest_magnitude_also_when_it_is_negative() -> None:
    model = nn.Linear(2, 1, bias=False)
    result = run_backward(model, torch.tensor([[-5.0, 1.0]]))
    gradient = result.parameters["weight"]
    assert gradient.grad is not None and gradient.grad.max == 1.0
    assert gradient.max_abs == 5.0 == float(model.weight.grad.abs().max())
    assert gradient.to_dict()["grad"]["max_abs"] == 5.0


def test_the_last_called_use_is_the_derived_one_and_the_others_are_hooked() -> None:
    """The last use called is the first backward reaches: left unhooked, autograd sums the
    others into its gradient in place, as it does without hooks (no second buffer)."""
    linear = nn.Linear(2, 2)
    model = nn.Sequential(linear, nn.Tanh(), linear, nn.Tanh(), linear)
    recorder = Recorder(model, record_parts=True, record_signal=False)
    recorder.multi_ids.add(id(linear.weight))
    recorder.install()
    try:
        loss = model(torch.ones(1, 2)).sum()
    finally:
        recorder.remove()
    recorder.count_uses(loss)
    uses = recorder.uses[id(linear.weight)]
    assert [use.name for use in uses] == ["0", "2", "4"]
    assert [use.derived for use in uses] == [False, False, True]
    assert [bool(use.view._backward_hooks) for use in uses] == [True, True, False]
    loss.backward()
    parts = recorder.parts_of(id(linear.weight))
    assert [part.grad is None for part in parts] == [False, False, True]
