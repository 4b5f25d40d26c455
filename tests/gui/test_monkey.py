"""A monkey test of the window: a seeded random sequence of real GUI actions.

Every action goes through the widgets and slots a user reaches (buttons, fields, menus' slots);
file dialogs and questions are answered by monkeypatched functions that record what was asked.
Each operation that changes the model in the GUI is applied to a reference session through the
core directly; at the end the window's model must equal it byte for byte. pytest-qt fails the test
on any exception raised in a slot and (pyproject's qt_log_level_fail) on any Qt warning.
"""

from __future__ import annotations

import contextlib
import random
import warnings
from pathlib import Path

import torch
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QApplication, QFileDialog, QMessageBox
from safetensors.torch import save_file

from paramscope.core.edit.session import Session
from paramscope.core.edit.value_edits import value_edit_command
from paramscope.core.files import regions
from paramscope.core.init.rule_parse import InitRule
from paramscope.core.init.rules import build_commands
from paramscope.core.init.selectors import Selector
from paramscope.core.sources.sources import open_source
from paramscope.gui.app.main_window import MainWindow
from paramscope.gui.panels.init_panel import CUSTOM, RULE, SELECTED_MODULE, SELECTED_TENSOR

STEPS = 300
DEMO_NAMES = ["mlp", "shared", "cnn", "tiny_lm", "lstm", "unregistered", "lazy", "deep_mlp"]
RULE_TEXTS = ["*.weight", "*", "*.bias", "re:^0", "type:Linear", "weights", "biases", "[", "re:(", "nothing.here"]
EXPRESSIONS = ["x * 2 + 1", "clamp(x, -0.1, 0.1)", "where(abs(x) > 0.5, x, 0)", "x ** 2", "sqrt(x)",
               "x +", "__import__('os')", "sign(x) * 0.01", "x / 0"]  # fmt: skip
FILTERS = ["", "", "weight", "bias", "0", "Linear", "zz", "["]


def _bytes(model) -> dict[str, bytes]:
    def of(value: torch.Tensor) -> bytes:
        if isinstance(value, torch.nn.parameter.UninitializedTensorMixin):
            return b"lazy"  # (no values before a forward)
        return b"meta" if value.is_meta else value.detach().contiguous().view(-1).view(torch.uint8).numpy().tobytes()

    return {k: of(v) for k, v in model.state_dict().items()}


class Monkey:
    def __init__(self, window: MainWindow, qtbot, rng: random.Random, folder: Path) -> None:
        self.window, self.qtbot, self.rng, self.folder = window, qtbot, rng, folder
        self.reference: Session | None = None
        self.done: list[str] = []  # successful model operations, for the failure message
        self.errors: list[str] = []
        window.errorShown.connect(self.errors.append)

    # --- helpers ---------------------------------------------------------------------------
    @property
    def state(self):
        return self.window.state

    def _has_session(self) -> bool:
        return self.state.has_session and self.reference is not None

    def _wait_workers(self) -> None:
        window = self.window
        self.qtbot.waitUntil(
            lambda: not window.backward_panel.worker.is_running and not window.files_actions.worker.is_running,
            timeout=30_000,
        )

    # --- actions ---------------------------------------------------------------------------
    def open_demo(self) -> None:
        name = self.rng.choice(DEMO_NAMES)
        if self.window.open_source(f"demo:{name}"):
            self.reference = Session(open_source(f"demo:{name}"))
            self.done.append(f"open {name}")

    def open_file(self) -> None:
        """A checkpoint opened lazily (as a large one is) in the worker, sometimes stopped."""
        path = self.rng.choice(self.files)
        with self.qtbot.waitSignal(self.window.opened, timeout=30_000) as ended:
            started = self.window.open_source(str(path))
            if started and self.rng.random() < 0.3:
                self.window.stop_opening()
        if ended.args == [True]:
            self.reference = Session(open_source(str(path)))
            self.done.append(f"open {path.name}")

    def select_tree_row(self) -> None:
        view = self.window.tree_panel.view
        model = view.model()
        index = model.index(0, 0)
        for _ in range(self.rng.randint(0, 3)):  # walk down a few levels
            rows = model.rowCount(index)
            if not rows:
                break
            index = model.index(self.rng.randrange(rows), 0, index)
        if index.isValid():
            view.setCurrentIndex(index)

    def select_table_row(self) -> None:
        view = self.window.param_panel.view
        rows = view.model().rowCount()
        if rows:
            view.selectRow(self.rng.randrange(rows))

    def filter(self) -> None:
        box = self.rng.choice([self.window.param_panel.filter_box, self.window.tree_panel.filter_box])
        box.setText(self.rng.choice(FILTERS))

    def _choose_targets(self) -> None:
        panel = self.window.init_panel
        mode = self.rng.choice([SELECTED_TENSOR, SELECTED_MODULE, RULE, RULE])
        panel.target_mode.setCurrentIndex(panel.target_mode.findData(mode))
        if mode == RULE:
            panel.rule_edit.setText(self.rng.choice(RULE_TEXTS))
        panel.weights_box.setChecked(self.rng.random() < 0.9)
        panel.biases_box.setChecked(self.rng.random() < 0.7)

    def initialize(self) -> None:
        if not self._has_session():
            return
        panel = self.window.init_panel
        self._choose_targets()
        combo = panel.initializer_combo
        choices = [i for i in range(combo.count()) if combo.itemData(i) != CUSTOM]
        combo.setCurrentIndex(self.rng.choice(choices))
        for name, _widget in panel.fields.items():
            if self.rng.random() < 0.5:
                continue
            value = self.rng.choice([0.0, 0.01, 1.0, -1.0, 2.5, 100.0, 0.5])
            with contextlib.suppress(TypeError, ValueError):
                panel.set_field(name, value)
        seed_text = self.rng.choice([str(self.rng.randrange(1000)), str(self.rng.randrange(1000)), "x12", "-3"])
        panel.seed_edit.setText(seed_text)
        panel.skip_refused.setChecked(self.rng.random() < 0.5)
        try:
            names, init_name, kwargs = panel.target_names(), panel.initializer_name, panel.kwargs()
        except Exception:  # noqa: BLE001  (a bad rule: the panel must say so itself)
            names = None
        if self.rng.random() < 0.3 and panel.preview():  # computed in a worker: seen before Apply
            self.qtbot.waitUntil(lambda: not panel.is_staging, timeout=30_000)
        pushes = Monkey._pushes
        qtbot_click(self.qtbot, panel.apply_button)
        self.qtbot.waitUntil(lambda: not panel.is_applying, timeout=30_000)  # (lsuv: done in a worker)
        if Monkey._pushes == pushes:
            return
        assert names is not None, "applied although the targets could not be read"
        rule = InitRule.make(Selector.of_names(names), init_name, **kwargs)
        _plan, commands = build_commands(self.reference, [rule], int(seed_text), panel.skip_refused.isChecked())
        with warnings.catch_warnings():  # the GUI turned torch's warnings into notices already
            warnings.simplefilter("ignore")
            self.reference.execute(commands[0])
        self.done.append(f"init {rule.text} seed={seed_text}")

    def value_edit(self) -> None:
        if not self._has_session():
            return
        panel = self.window.init_panel
        self._choose_targets()
        kind = self.rng.choice([panel.edit_kind.itemText(i) for i in range(panel.edit_kind.count())])
        panel.edit_kind.setCurrentText(kind)
        panel.edit_value.setValue(self.rng.choice([0.0, 1.0, -2.0, 0.5, 3.25]))
        panel.clamp_low.setValue(self.rng.choice([-1.0, -0.1, 0.0, 0.2]))
        panel.clamp_high.setValue(self.rng.choice([1.0, 0.1, 0.0, -0.5]))
        panel.expression_edit.setText(self.rng.choice(EXPRESSIONS))
        try:
            names = panel.target_names()
        except Exception:  # noqa: BLE001
            names = None
        pushes = Monkey._pushes
        qtbot_click(self.qtbot, panel.edit_button)
        if Monkey._pushes == pushes:
            return
        assert names is not None
        command = value_edit_command(
            self.reference, names, kind,
            value=panel.edit_value.value() if kind in ("add", "multiply", "set") else None,
            low=panel.clamp_low.value() if kind == "clamp" else None,
            high=panel.clamp_high.value() if kind == "clamp" else None,
            expression=panel.expression_edit.text() if kind == "expression" else None,
        )  # fmt: skip
        self.reference.execute(command)
        self.done.append(f"edit {command.text}")

    _pushes = 0  # successful pushes on the window's undo stacks

    def undo(self) -> None:
        if not self._has_session():
            return
        can = self.state.session.stack.can_undo
        assert can == self.reference.stack.can_undo
        self.window.undo_action.trigger()
        if can:
            self.reference.undo()
            self.done.append("undo")

    def redo(self) -> None:
        if not self._has_session():
            return
        can = self.state.session.stack.can_redo
        assert can == self.reference.stack.can_redo
        self.window.redo_action.trigger()
        if can:
            self.reference.redo()
            self.done.append("redo")

    def backward(self) -> None:
        if not self._has_session():
            return
        panel = self.window.backward_panel
        if self.rng.random() < 0.3:
            panel.input_edit.setText(self.rng.choice(["rand(2, 3)", "randint(2, 4, high=10)", "bad(", "rand(2, 4)"]))
        elif self.rng.random() < 0.5:
            panel.reset_input()
        panel.mode_combo.setCurrentIndex(self.rng.randrange(panel.mode_combo.count()))
        panel.accumulate_box.setChecked(self.rng.random() < 0.5)
        qtbot_click(self.qtbot, panel.run_button)
        if self.rng.random() < 0.7:
            self._wait_workers()

    def switch_view(self) -> None:
        """Another plot tab, another histogram mode (values, gradient, dequantized)."""
        window = self.window
        window.tabs.setCurrentIndex(self.rng.randrange(window.tabs.count()))
        mode = window.histogram_panel.mode
        mode.setCurrentIndex(self.rng.randrange(mode.count()))

    def zero_grad(self) -> None:
        if self._has_session():
            self._wait_workers()
            qtbot_click(self.qtbot, self.window.backward_panel.zero_button)

    def export(self) -> None:
        if not self._has_session():
            return
        self._wait_workers()
        target = self.folder / f"export{self.rng.randrange(3)}{self.rng.choice(['.safetensors', '.pt', '.txt'])}"
        self.qtbot._monkey_target = target
        self.window.files_actions.export_dialog()
        self._wait_workers()
        assert not [p for p in self.folder.iterdir() if p.name.endswith(".tmp")]

    def close_dialogs(self) -> None:
        for widget in QApplication.topLevelWidgets():
            if isinstance(widget, QMessageBox) and widget.isVisible():
                widget.close()


def quantized_files(folder: Path) -> list[Path]:
    """A float8 checkpoint with block scales, and gpt-oss-like MXFP4 experts beside a norm."""
    generator = torch.Generator().manual_seed(0)
    weight = torch.randn(6, 4, generator=generator)
    fp8 = folder / "fp8.safetensors"
    save_file({"proj.weight": (weight / 0.01).to(torch.float8_e4m3fn), "proj.weight_scale_inv": torch.full((1, 1), 0.01),
               "proj.bias": torch.zeros(6), "norm.weight": torch.ones(6)}, str(fp8))  # fmt: skip
    mxfp4 = folder / "mxfp4.safetensors"
    save_file({"experts.down_proj_blocks": torch.randint(0, 256, (2, 4, 1, 16), generator=generator, dtype=torch.uint8),
               "experts.down_proj_scales": torch.full((2, 4, 1), 120, dtype=torch.uint8),
               "norm.weight": torch.ones(4)}, str(mxfp4))  # fmt: skip
    return [fp8, mxfp4]


def has_uninitialized(model: torch.nn.Module) -> bool:
    return any(isinstance(p, torch.nn.parameter.UninitializedParameter) for p in model.parameters())


def qtbot_click(qtbot, button) -> None:
    if button.isEnabled() and button.isVisible():
        qtbot.mouseClick(button, Qt.MouseButton.LeftButton)
    elif button.isEnabled():
        button.click()


def test_monkey(qtbot, tmp_path, monkeypatch):
    rng = random.Random(20240607)
    questions: list[str] = []

    def question(parent, title, text, *args, **kwargs):
        questions.append(text)
        return QMessageBox.StandardButton.Discard

    monkeypatch.setattr(QMessageBox, "question", staticmethod(question))
    monkeypatch.setattr(
        QFileDialog, "getSaveFileName", staticmethod(lambda *a, **k: (str(qtbot._monkey_target), ""))
    )
    window = MainWindow(interactive=True)
    qtbot.addWidget(window)
    window.show()
    monkey = Monkey(window, qtbot, rng, tmp_path)
    monkey.files = quantized_files(tmp_path)
    monkeypatch.setattr(regions, "LAZY_BYTES", 0)  # they open lazily, as checkpoints of many gigabytes do

    # count pushes on whatever stack is current, so a changed model is noticed exactly
    def on_session() -> None:
        if window.state.has_session:
            stack = window.state.session.stack
            if not getattr(stack, "_monkey_hooked", False):
                stack._monkey_hooked = True
                original = stack.push

                def push(command, *args, **kwargs):
                    result = original(command, *args, **kwargs)
                    Monkey._pushes += 1  # counted only when the command went through
                    return result

                stack.push = push
            mirror_materialized()

    def mirror_materialized() -> None:
        """A backward in the window ran the lazy demo's forward and so gave (some of) its lazy
        parameters shapes and values, even when it then failed (the session rebuilt): the
        reference takes the same."""
        reference = getattr(monkey, "reference", None)
        if reference is None or reference.opened.source != window.state.session.opened.source:
            return  # another model opened (its reference comes next)
        shaped = {name: value for name, value in window.state.session.model.state_dict().items()
                  if not isinstance(value, torch.nn.parameter.UninitializedTensorMixin)}  # fmt: skip
        lazy = [name for name, value in reference.model.state_dict().items()
                if isinstance(value, torch.nn.parameter.UninitializedTensorMixin) and name in shaped]  # fmt: skip
        if lazy:
            with torch.no_grad():  # (a lazy module's load materializes the parameters given)
                reference.model.load_state_dict({name: shaped[name] for name in lazy}, strict=False)
            reference.rebuild()

    window.state.sessionChanged.connect(on_session)
    Monkey._pushes = 0
    monkey.open_demo()
    actions = [
        (monkey.open_demo, 1), (monkey.select_tree_row, 6), (monkey.select_table_row, 6), (monkey.filter, 3),
        (monkey.initialize, 8), (monkey.value_edit, 6), (monkey.undo, 5), (monkey.redo, 3),
        (monkey.backward, 3), (monkey.zero_grad, 2), (monkey.export, 1), (monkey.close_dialogs, 2),
        (monkey.switch_view, 3), (monkey.open_file, 1),
    ]  # fmt: skip
    functions, weights = zip(*actions, strict=True)
    for _step in range(STEPS):
        action = rng.choices(functions, weights)[0]
        action()
        if not monkey._has_session():
            monkey.open_demo()
    monkey._wait_workers()
    window.statistics.cancel_and_wait()

    assert len([d for d in monkey.done if d.startswith(("init", "edit"))]) >= 20, monkey.done
    assert monkey.errors, "the random invalid input produced no error at all"
    assert all("\n" not in e for e in monkey.errors)
    assert not [e for e in monkey.errors if e.startswith("statistics:")]  # the worker itself never fails
    assert _bytes(window.state.session.model) == _bytes(monkey.reference.model), monkey.done[-10:]
    monkey.close_dialogs()
    window.close()
    window.statistics.cancel_and_wait()
