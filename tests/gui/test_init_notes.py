"""The Initialize panel's notes, through its widgets: fans torch gets wrong (both numbers), and
LSUV — what it needs, one undoable step, seed-reproducible, unit std checked with plain torch."""

from __future__ import annotations

import pytest
import torch
from PySide6.QtCore import Qt
from torch import nn
from torch.nn import init

from paramscope.core.sources.sources import OpenedModel
from paramscope.gui.panels.init_panel import RULE, SELECTED_TENSOR


class Convs(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.depthwise = nn.Conv2d(4, 4, 3, groups=4)
        self.up = nn.ConvTranspose2d(4, 6, 2, stride=2)
        self.dense = nn.Conv2d(4, 4, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.up(self.dense(self.depthwise(x)))


def notes_of(window) -> str:
    notes = window.init_panel.notes.label
    return notes.text() if notes.isVisible() else ""


def pick(window, tensor: str, initializer: str) -> None:
    panel = window.init_panel
    panel.target_mode.setCurrentIndex(panel.target_mode.findData(SELECTED_TENSOR))
    window.state.select_tensor(tensor)
    panel.set_initializer(initializer)


@pytest.fixture
def convs(window, qtbot):
    window.open_model(OpenedModel(Convs(), "convs", "live"))
    window.raise_dock(window.init_dock)
    return window


def test_depthwise_fan_out_shows_torchs_number_and_the_connection_count(convs, qtbot):
    window = convs
    torch_in, torch_out = init._calculate_fan_in_and_fan_out(window.state.session.model.depthwise.weight)
    assert (torch_in, torch_out) == (9, 36)  # pytorch/pytorch#23854: out/groups * k = 9 is meant
    pick(window, "depthwise.weight", "xavier_normal_")
    qtbot.waitUntil(lambda: "torch's fan_out=36, per connection fan_out=9" in notes_of(window))
    assert "23854" in notes_of(window) and "depthwise.weight" in notes_of(window)
    pick(window, "depthwise.weight", "kaiming_normal_")  # mode fan_in: torch's fan_in is right
    qtbot.waitUntil(lambda: notes_of(window) == "")
    mode = window.init_panel.fields["mode"]
    mode.setCurrentText("fan_out")  # an edit of the form updates the note
    qtbot.waitUntil(lambda: "torch's fan_out=36, per connection fan_out=9" in notes_of(window))
    pick(window, "dense.weight", "xavier_normal_")  # an ordinary conv: nothing to say
    qtbot.waitUntil(lambda: notes_of(window) == "")
    pick(window, "depthwise.weight", "normal_")  # no fans used: nothing to say
    qtbot.waitUntil(lambda: notes_of(window) == "")


def test_transposed_conv_fans_are_read_the_other_way_round(convs, qtbot):
    window = convs
    weight = window.state.session.model.up.weight  # (in=4, out=6, 2, 2)
    torch_in, _ = init._calculate_fan_in_and_fan_out(weight)
    assert torch_in == 6 * 4
    pick(window, "up.weight", "kaiming_uniform_")
    qtbot.waitUntil(lambda: f"torch's fan_in={torch_in}, per connection fan_in={4 * 4}" in notes_of(window))
    assert "ConvTranspose2d" in notes_of(window) and "stride (2, 2)" in notes_of(window)


@pytest.fixture
def lsuv_panel(open_demo):
    window = open_demo("deep_mlp")
    window.raise_dock(window.init_dock)
    panel = window.init_panel
    panel.target_mode.setCurrentIndex(panel.target_mode.findData(RULE))
    panel.rule_edit.setText("*.weight")
    panel.set_initializer("lsuv")
    return window, panel


def test_lsuv_says_in_one_line_what_it_needs(lsuv_panel, qtbot):
    window, panel = lsuv_panel
    qtbot.waitUntil(lambda: "lsuv needs a sample input: type one in 'input', e.g. rand(64, 64)" in notes_of(window))
    errors: list[str] = []
    window.errorShown.connect(errors.append)
    qtbot.mouseClick(panel.apply_button, Qt.MouseButton.LeftButton)
    assert len(errors) == 1 and "\n" not in errors[0] and "needs a sample input" in errors[0]
    assert not window.state.session.stack.history
    qtbot.keyClicks(panel.fields["input"], "randn(256,64)")
    qtbot.waitUntil(lambda: "lsuv runs randn(256,64) through the model" in notes_of(window))
    rows = [panel.targets_list.item(i).text() for i in range(panel.targets_list.count())]
    assert not any("REFUSED" in r or "needs a sample input" in r for r in rows)  # the list followed the form


def test_lsuv_applies_as_one_step_reaches_unit_std_and_repeats_with_its_seed(lsuv_panel, qtbot):
    window, panel = lsuv_panel
    session = window.state.session
    model = session.model
    before = {k: v.clone() for k, v in model.state_dict().items()}
    panel.fields["input"].setText("randn(256,64)")
    panel.seed_edit.setText("5")
    with qtbot.waitSignal(panel.applied):
        qtbot.mouseClick(panel.apply_button, Qt.MouseButton.LeftButton)
        # its forward passes run in the worker (one layer of a 0.5B model froze the window 3.5 s)
        assert panel.is_applying and window.state.model_busy
    assert len(session.stack.history) == 1 and not window.state.model_busy
    after = {k: v.clone() for k, v in model.state_dict().items()}
    stds: list[float] = []
    hooks = [m.register_forward_hook(lambda _m, _i, out: stds.append(float(out.detach().std())))
             for m in model.modules() if isinstance(m, nn.Linear)]  # fmt: skip
    with torch.no_grad():
        model(torch.randn(256, 64, generator=torch.Generator().manual_seed(123)))  # a fresh input
    for hook in hooks:
        hook.remove()
    assert len(stds) == 20 and all(0.85 <= s <= 1.15 for s in stds), stds
    window.undo()
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())
    with qtbot.waitSignal(panel.applied):  # the same seed, the same bytes
        qtbot.mouseClick(panel.apply_button, Qt.MouseButton.LeftButton)
    assert all(torch.equal(v, after[k]) for k, v in model.state_dict().items())


def test_lsuv_failing_in_the_worker_is_one_line_and_changes_nothing(lsuv_panel, qtbot):
    window, panel = lsuv_panel
    before = {k: v.clone() for k, v in window.state.session.model.state_dict().items()}
    panel.fields["input"].setText("randn(8,3)")  # the model takes 64 features: its forward fails mid-way
    errors: list[str] = []
    window.errorShown.connect(errors.append)
    qtbot.mouseClick(panel.apply_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: not panel.is_applying and bool(errors))
    assert len(errors) == 1 and "\n" not in errors[0], errors
    assert all(torch.equal(v, before[k]) for k, v in window.state.session.model.state_dict().items())
    assert not window.state.session.stack.history and not window.state.model_busy


def test_lsuv_notes_the_layers_it_skips(open_demo, qtbot):
    window = open_demo("tiny_lm")
    window.raise_dock(window.init_dock)
    panel = window.init_panel
    panel.target_mode.setCurrentIndex(panel.target_mode.findData(RULE))
    panel.rule_edit.setText("*.weight")
    panel.set_initializer("lsuv")
    panel.skip_refused.setChecked(True)  # LayerNorm weights are 1-D: refused
    panel.fields["input"].setText("randint(64,8,high=100)")
    with qtbot.waitSignal(panel.applied):
        qtbot.mouseClick(panel.apply_button, Qt.MouseButton.LeftButton)
    run_notes = panel.notes.run_notes
    assert run_notes.isVisible() and "self_attn.out_proj: not called as a module" in run_notes.text()


def test_lsuv_without_the_models_code_is_one_line(open_demo, qtbot, tmp_path):
    from safetensors.torch import save_file

    window = open_demo("deep_mlp")
    path = tmp_path / "weights.safetensors"
    save_file({k: v.contiguous() for k, v in window.state.session.model.state_dict().items()}, str(path))
    with qtbot.waitSignal(window.opened, timeout=60_000):
        window.open_source(str(path))
    qtbot.waitUntil(lambda: window.state.session.opened.source == str(path), timeout=60_000)
    window.raise_dock(window.init_dock)
    panel = window.init_panel
    panel.target_mode.setCurrentIndex(panel.target_mode.findData(RULE))
    panel.rule_edit.setText("*.weight")
    panel.set_initializer("lsuv")
    qtbot.waitUntil(lambda: "lsuv needs the model's code to run a forward" in notes_of(window))
    panel.fields["input"].setText("randn(256,64)")
    errors: list[str] = []
    window.errorShown.connect(errors.append)
    qtbot.mouseClick(panel.apply_button, Qt.MouseButton.LeftButton)
    assert len(errors) == 1 and "\n" not in errors[0] and "needs the model's code" in errors[0]


def test_fan_notes_of_a_lazy_parameter_raise_nothing(window, qtbot):
    """A lazy parameter has no shape until a forward: the fan notes asked for its dim() and the
    event loop got a traceback (found by the monkey test)."""
    assert window.open_source("demo:lazy")
    lazy = next(n for n, i in window.state.session.report.parameters.items() if i.shape is None)
    pick(window, lazy, "kaiming_normal_")  # fans used
    qtbot.wait(50)  # (pytest-qt fails the test on an exception in a slot)
    assert notes_of(window) == ""
