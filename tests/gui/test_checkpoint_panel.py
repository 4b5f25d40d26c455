"""The Checkpoint panel (notes, entries, optimizer state, weight set) and the load report's key change."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from PySide6.QtWidgets import QDialog
from torch import nn

from paramscope.core.files.weights_fit import compare_weights
from paramscope.core.sources.demos import build_demo
from paramscope.gui.app.files_actions import FilesActions, LoadWeightsDialog
from paramscope.gui.panels.checkpoint_panel import SORT_ROLE
from paramscope.gui.state import AppState


def _training_checkpoint(tmp_path: Path) -> tuple[Path, nn.Module, dict[str, torch.Tensor]]:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 3), nn.ReLU(), nn.Linear(3, 2))
    optimizer = torch.optim.Adam(model.parameters(), lr=0.002)
    model(torch.randn(5, 4)).pow(2).sum().backward()
    optimizer.step()
    ema = {k: v * 0.5 for k, v in model.state_dict().items()}
    path = tmp_path / "train.pt"
    torch.save(
        {"epoch": 3, "global_step": 120, "hyper_parameters": {"lr": 0.002, "model": {"width": 3}},
         "model": model.state_dict(), "ema": ema, "optimizer": optimizer.state_dict()},
        path,
    )  # fmt: skip
    return path, model, ema


def _open(window, qtbot, spec: str, **options: str) -> None:
    with qtbot.waitSignal(window.opened, timeout=60_000) as blocker:
        assert window.open_source(spec, **options)
    assert blocker.args == [True]


def _children(item) -> dict[str, object]:
    return {item.child(i).text(0): item.child(i) for i in range(item.childCount())}


def _top(tree, title: str):
    return next(tree.topLevelItem(i) for i in range(tree.topLevelItemCount()) if tree.topLevelItem(i).text(0).startswith(title))


def test_the_panel_shows_notes_entries_and_optimizer_state(window, qtbot, tmp_path: Path) -> None:
    path, model, _ = _training_checkpoint(tmp_path)
    assert window.checkpoint_dock.windowTitle() == "Checkpoint"
    assert window.checkpoint_dock in window.tabifiedDockWidgets(window.diagnostics_dock)
    _open(window, qtbot, str(path))
    panel = window.checkpoint_panel
    notes = _children(_top(panel.info, "Notes"))
    assert window.checkpoint_dock.windowTitle() == f"Checkpoint ({len(notes)} notes)"  # something to read
    assert "weights taken from the 'model' entry" in notes
    assert "also holds weights in 'ema' (open one with --entry ema)" in notes
    entries = _children(_top(panel.info, "Checkpoint"))
    assert entries["epoch"].text(1) == "3" and entries["global_step"].text(1) == "120"
    hyper = _children(entries["hyper_parameters"])
    assert hyper["lr"].text(1) == "0.002" and _children(hyper["model"])["width"].text(1) == "3"
    optimizer = _top(panel.info, "Optimizer (optimizer)")
    assert optimizer.text(1) == "Adam"
    rows = [panel.states.topLevelItem(i) for i in range(panel.states.topLevelItemCount())]
    expected = [(n, k) for n, _ in model.named_parameters() for k in ("exp_avg", "exp_avg_sq")]
    assert [(r.text(0), r.text(1)) for r in rows] == expected
    assert not panel.states.isHidden() and panel.empty.isHidden()
    # the table's statistics are those of the optimizer's own tensor
    exp_avg = torch.load(path, weights_only=True)["optimizer"]["state"][0]["exp_avg"]
    assert rows[0].text(2) == str(list(model[0].weight.shape))
    assert rows[0].data(7, SORT_ROLE) == pytest.approx(exp_avg.double().norm().item(), rel=1e-9)
    assert rows[0].text(7) == f"{exp_avg.double().norm().item():.4f}"
    assert [panel.entry_box.itemText(i) for i in range(panel.entry_box.count())] == ["model", "ema"]
    assert panel.entry_box.currentText() == "model" and not panel.entry_box.isHidden()


def test_choosing_another_weight_set_reopens_the_file_with_it(window, qtbot, tmp_path: Path) -> None:
    path, _, ema = _training_checkpoint(tmp_path)
    _open(window, qtbot, str(path))
    with qtbot.waitSignal(window.opened, timeout=60_000) as blocker:
        window.checkpoint_panel.entry_box.textActivated.emit("ema")
    assert blocker.args == [True]
    opened = window.state.session.opened
    assert opened.entry == "ema"
    for name, value in ema.items():
        assert torch.equal(window.state.session.model.state_dict()[name], value)
    assert window.checkpoint_panel.entry_box.currentText() == "ema"


def test_an_unknown_entry_in_the_window_is_one_line(window, qtbot, tmp_path: Path) -> None:
    path, _, _ = _training_checkpoint(tmp_path)
    with qtbot.waitSignal(window.errorShown, timeout=60_000) as blocker:
        window.open_source(str(path), entry="emma")
    assert blocker.args[0] == f"{path}: has no weight entry 'emma'; entries holding weights: model, ema"


def test_a_plain_model_shows_no_choice(window, qtbot) -> None:
    with qtbot.waitSignal(window.statistics.allDone, timeout=60_000):
        window.open_source("demo:mlp")
    panel = window.checkpoint_panel
    assert panel.entry_box.isHidden() and not panel.empty.isHidden() and panel.splitter.isHidden()


# --- the load report's suggested key change -----------------------------------------------------


@pytest.fixture
def state(qtbot) -> AppState:
    app_state = AppState()
    assert app_state.open("demo:mlp")
    return app_state


def _ddp_file(tmp_path: Path) -> tuple[Path, dict[str, torch.Tensor]]:
    other = build_demo("mlp", seed=7)
    saved = {f"module.{k}": v for k, v in other.state_dict().items()}
    path = tmp_path / "ddp.pt"
    torch.save(saved, path)
    return path, dict(other.state_dict())


def test_the_report_offers_the_prefix_and_loads_with_it(qtbot, state: AppState, tmp_path: Path) -> None:
    path, expected = _ddp_file(tmp_path)
    tensors = torch.load(path, weights_only=True)
    report = compare_weights(state.session.model, tensors)
    dialog = LoadWeightsDialog(report, str(path))
    qtbot.addWidget(dialog)
    assert dialog.suggestion_button is not None and dialog.suggestion_button.text() == "Strip 'module.' and load"
    dialog.suggestion_button.click()
    assert dialog.use_suggestion and dialog.result() == QDialog.DialogCode.Accepted
    before = {k: v.clone() for k, v in state.session.model.state_dict().items()}
    actions = FilesActions(state, interactive=False)
    with qtbot.waitSignal(actions.weightsApplied) as applied:
        assert actions.apply_suggestion(tensors, report, str(path))
    assert applied.args[0].fits
    for name, value in expected.items():
        assert torch.equal(state.session.model.state_dict()[name], value)
    state.session.undo()  # one undoable step
    for name, value in before.items():
        assert torch.equal(state.session.model.state_dict()[name], value)


def test_a_fitting_file_has_no_key_change_button(qtbot, state: AppState) -> None:
    report = compare_weights(state.session.model, dict(build_demo("mlp").state_dict()))
    dialog = LoadWeightsDialog(report, "same.pt")
    qtbot.addWidget(dialog)
    assert dialog.suggestion_button is None


def test_load_weights_through_the_dialog_button(qtbot, state: AppState, tmp_path: Path, monkeypatch) -> None:
    path, expected = _ddp_file(tmp_path)

    def click_suggestion(dialog: LoadWeightsDialog) -> int:
        dialog.suggestion_button.click()
        return dialog.result()

    monkeypatch.setattr(LoadWeightsDialog, "exec", click_suggestion)
    actions = FilesActions(state, interactive=True)
    with qtbot.waitSignal(actions.weightsApplied, timeout=60_000):
        actions.start_read_weights(str(path))
    for name, value in expected.items():
        assert torch.equal(state.session.model.state_dict()[name], value)


def test_the_window_command_threads_strip_prefix_and_entry(tmp_path: Path) -> None:
    """``paramscope FILE.py:NAME --weights DDP_FILE --strip-prefix auto`` opens; a bad --entry is one line."""
    import os
    import subprocess
    import sys

    path, _ = _ddp_file(tmp_path)
    factory = tmp_path / "net.py"
    factory.write_text("from paramscope.core.sources.demos import build_demo\ndef net():\n    return build_demo('mlp')\n")
    env = dict(os.environ, QT_QPA_PLATFORM="offscreen")

    def window(*args: str) -> subprocess.CompletedProcess[str]:
        command = [sys.executable, "-m", "paramscope", *args, "--screenshot", str(tmp_path / "w.png")]
        return subprocess.run(command, capture_output=True, text=True, timeout=300, env=env)

    refused = window(f"{factory}:net", "--weights", str(path))
    assert refused.returncode == 2 and "keys match after stripping 'module.'" in refused.stderr
    done = window(f"{factory}:net", "--weights", str(path), "--strip-prefix", "auto")
    assert done.returncode == 0, done.stderr
    checkpoint, _, _ = _training_checkpoint(tmp_path)
    bad = window(str(checkpoint), "--entry", "emma")
    assert bad.returncode == 2
    assert bad.stderr.strip().splitlines() == [
        f"paramscope: {checkpoint}: has no weight entry 'emma'; entries holding weights: model, ema"
    ]
