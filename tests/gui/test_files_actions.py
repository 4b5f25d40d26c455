"""GUI file actions: export off the GUI thread, load-weights report, diff view, trust consent."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from PySide6.QtCore import Qt

from paramscope.core.edit.commands import TensorEditCommand
from paramscope.core.files import UntrustedFileError
from paramscope.core.files.weights_fit import compare_weights
from paramscope.core.sources.demos import build_demo
from paramscope.core.sources.diff import diff_state_dicts
from paramscope.gui.app.files_actions import DiffView, FilesActions, LoadWeightsDialog
from paramscope.gui.consent import open_with_consent, trust_question
from paramscope.gui.state import AppState


@pytest.fixture
def state(qtbot) -> AppState:
    app_state = AppState()
    assert app_state.open("demo:mlp")
    return app_state


def test_export_runs_in_worker_and_marks_clean(qtbot, state: AppState, tmp_path: Path) -> None:
    actions = FilesActions(state, interactive=False)
    weight = state.session.tensor("0.weight")
    state.execute(TensorEditCommand("fill", [("0.weight", weight)], lambda: weight.fill_(0.25)))
    assert state.session.modified
    target = tmp_path / "mlp.safetensors"
    with qtbot.waitSignal(actions.exportFinished, timeout=30_000) as blocker:
        actions.start_export(target)
    assert blocker.args[0].path == target
    assert not state.session.modified
    from safetensors.torch import load_file

    assert torch.all(load_file(str(target))["0.weight"] == 0.25)


def test_export_selected_module_writes_its_subtree(
    qtbot, state: AppState, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    actions = FilesActions(state, interactive=False)
    state.select_module("2")
    target = tmp_path / "layer2.pt"
    monkeypatch.setattr(
        "paramscope.gui.app.files_actions.QFileDialog.getSaveFileName", lambda *a, **k: (str(target), "")
    )
    with qtbot.waitSignal(actions.exportFinished, timeout=30_000):
        actions.export_module_dialog()
    written = torch.load(target, weights_only=True)
    assert sorted(written) == ["bias", "weight"]  # names relative to module 2, as net[2].state_dict()
    assert torch.equal(written["weight"], state.session.tensor("2.weight").detach())


def test_the_file_menu_can_make_exports_wait_for_the_disk(
    qtbot, state: AppState, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from PySide6.QtWidgets import QMenu

    from paramscope.core.files import atomic

    synced: list[Path] = []
    real = atomic._fsync_file
    monkeypatch.setattr(atomic, "_fsync_file", lambda tmp: (synced.append(tmp), real(tmp)))
    actions = FilesActions(state, interactive=False)
    menu = QMenu()
    actions.install(menu)
    toggle = next(a for a in menu.actions() if a.text() == "Wait for the disk when exporting")
    assert toggle.isCheckable() and not toggle.isChecked()
    with qtbot.waitSignal(actions.exportFinished, timeout=30_000):
        actions.start_export(tmp_path / "a.pt")
    assert synced == []
    toggle.trigger()
    with qtbot.waitSignal(actions.exportFinished, timeout=30_000):
        actions.start_export(tmp_path / "b.pt")
    assert len(synced) == 1
    assert actions.save_now(tmp_path / "c.pt") and len(synced) == 2
    assert FilesActions(state, interactive=False).sync_action.isChecked()  # remembered
    toggle.trigger()
    assert not FilesActions(state, interactive=False).sync_action.isChecked()


def test_export_error_reported_and_target_kept(qtbot, state: AppState, tmp_path: Path) -> None:
    actions = FilesActions(state, interactive=False)
    with qtbot.waitSignal(state.errorOccurred, timeout=30_000) as blocker:
        actions.start_export(tmp_path / "missing" / "x.pt")
    assert "does not exist" in blocker.args[0]


def test_load_weights_report_then_partial_apply_and_undo(qtbot, state: AppState, tmp_path: Path) -> None:
    other = dict(build_demo("mlp", seed=3).state_dict())
    other.pop("2.bias")
    path = tmp_path / "partial.pt"
    torch.save(other, path)
    actions = FilesActions(state, interactive=False)
    with qtbot.waitSignal(actions.weightsRead, timeout=30_000) as blocker:
        actions.start_read_weights(str(path))
    source, tensors, report = blocker.args[0]
    assert report.missing == ["2.bias"]
    dialog = LoadWeightsDialog(report, source)
    qtbot.addWidget(dialog)
    assert "1 missing" in dialog.summary.text()
    assert dialog.partial_button.isChecked()
    dialog.strict_button.setChecked(True)
    assert not dialog.apply_button.isEnabled()  # strict cannot apply weights that do not fit
    dialog.partial_button.setChecked(True)
    assert dialog.apply_button.isEnabled()
    before = state.session.tensor("0.weight").clone()
    assert actions.apply(tensors, report, source, strict=dialog.strict)
    assert torch.equal(state.session.tensor("0.weight"), other["0.weight"])
    state.session.undo()
    assert torch.equal(state.session.tensor("0.weight"), before)


def test_diff_view_lists_changes(qtbot, state: AppState, tmp_path: Path) -> None:
    path = tmp_path / "cnn.pt"
    torch.save(build_demo("mlp", seed=8).state_dict(), path)
    actions = FilesActions(state, interactive=False)
    with qtbot.waitSignal(actions.diffReady, timeout=30_000) as blocker:
        actions.start_diff(str(path))
    assert len(blocker.args[0].changed) == 4
    view = actions.diff_view
    qtbot.addWidget(view)
    assert view.model.rowCount() == 4
    shared = torch.ones(2)
    a = {"w": torch.ones(2), "gone": torch.ones(1)}
    b = {"w": shared, "new": torch.ones(1), "w_alias": shared}
    view.set_result(diff_state_dicts(a, b), "A", "B")
    statuses = [view.model.index(r, 1).data() for r in range(view.model.rowCount())]
    # the diff's order until a header is clicked
    assert statuses == ["identical", "only in A", "only in B", "only in B, tied there to w"]


def test_diff_view_says_when_only_the_dtype_changed(qtbot) -> None:
    a = {"w": torch.ones(2, dtype=torch.bfloat16), "v": torch.ones(2)}
    view = DiffView(diff_state_dicts(a, {"w": torch.ones(2), "v": torch.ones(2)}), "A", "B")
    qtbot.addWidget(view)
    statuses = {view.model.index(r, 0).data(): view.model.index(r, 1).data() for r in range(view.model.rowCount())}
    assert statuses == {"w": "same values, bfloat16 → float32", "v": "identical"}
    assert "0 changed, 1 identical, 1 same values in another dtype" in view.summary.text()


def test_diff_view_sorts_numbers_by_value(qtbot, qtmodeltester) -> None:
    a = {"small": torch.zeros(3), "big": torch.zeros(3), "tiny": torch.zeros(3), "same": torch.ones(3), "gone": torch.ones(1)}
    b = {"small": torch.full((3,), 2.0), "big": torch.full((3,), 10.0), "tiny": torch.full((3,), 0.5),
         "same": torch.ones(3)}  # fmt: skip
    view = DiffView(diff_state_dicts(a, b), "A", "B")
    qtbot.addWidget(view)
    qtmodeltester.check(view.model)
    view.table.sortByColumn(2, Qt.SortOrder.DescendingOrder)  # max |Δ|: 10 > 2 > 0.5 (not "2" > "10")
    column = [view.model.index(r, 2).data() for r in range(view.model.rowCount())]
    names = [view.model.index(r, 0).data() for r in range(view.model.rowCount())]
    assert column == ["10", "2", "0.5", "0", "—"] and names[:3] == ["big", "small", "tiny"]
    assert view.model.index(0, 2).data(Qt.ItemDataRole.TextAlignmentRole) & Qt.AlignmentFlag.AlignRight
    view.table.sortByColumn(0, Qt.SortOrder.AscendingOrder)
    assert [view.model.index(r, 0).data() for r in range(5)] == sorted(names)


def test_untrusted_file_needs_consent(qtbot, state: AppState, tmp_path: Path) -> None:
    path = tmp_path / "whole.pt"
    torch.save(build_demo("cnn"), path)
    asked: list[UntrustedFileError] = []
    with qtbot.waitSignal(state.errorOccurred) as blocker:
        assert not open_with_consent(state, str(path), ask=lambda e: asked.append(e) or False)
    assert str(path) in blocker.args[0]
    assert state.session.opened.source == "demo:mlp"  # the current model stays
    assert str(path) in trust_question(asked[0]) and "run code" in trust_question(asked[0])
    assert open_with_consent(state, str(path), ask=lambda e: True)
    assert state.session.opened.kind == "pickled_module"


def test_load_weights_dialog_for_a_fitting_file(qtbot) -> None:
    report = compare_weights(build_demo("mlp"), dict(build_demo("mlp", seed=1).state_dict()))
    dialog = LoadWeightsDialog(report, "w.pt")
    qtbot.addWidget(dialog)
    assert dialog.strict and dialog.apply_button.isEnabled()


def test_main_window_file_menu_has_file_actions(qtbot, tmp_path: Path) -> None:
    from paramscope.gui.app.main_window import MainWindow

    window = MainWindow(interactive=False)
    qtbot.addWidget(window)
    texts = [a.text() for a in window.file_menu.actions()]
    assert {"&Export state_dict…", "&Load weights…", "&Diff against…"} <= set(texts)
    path = tmp_path / "whole.pt"
    torch.save(build_demo("mlp"), path)
    with qtbot.waitSignal(window.errorShown) as blocker, qtbot.waitSignal(window.opened) as ended:
        window.open_source(str(path))  # parsed in a worker
    assert ended.args == [False]  # no dialog without interaction: refused
    assert "--trust" in blocker.args[0]


def test_the_diff_window_opens_over_the_main_window(window, qtbot, tmp_path: Path) -> None:
    """A window of its own was placed by the window manager, half off the screen."""
    path = tmp_path / "other.pt"
    torch.save(build_demo("mlp", seed=8).state_dict(), path)
    assert window.open_source("demo:mlp")
    window.setGeometry(100, 80, 1000, 700)
    actions = window.files_actions
    for _ in range(2):  # a second diff replaces the first window
        with qtbot.waitSignal(actions.diffReady, timeout=30_000):
            actions.start_diff(str(path))
    view = actions.diff_view
    assert view.isWindow() and view.parent() is window
    assert window.frameGeometry().contains(view.geometry().center())
    assert view.width() <= window.width() and view.height() <= window.height()
    qtbot.wait(10)  # the first window is deleted by then
    assert len([w for w in window.findChildren(DiffView)]) == 1



def test_a_diff_takes_the_models_tensors_in_its_worker_and_edits_wait_for_that(
    qtbot, state: AppState, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """torch's state_dict() walk held the GUI thread 0.9 s at 100,000 tensors when a diff began."""
    import threading
    import time

    from paramscope.core.edit.value_edits import value_edit_command

    path = tmp_path / "other.pt"
    torch.save(build_demo("mlp", seed=8).state_dict(), path)
    model = state.session.model
    walked_on: list[str] = []
    state_dict = type(model).state_dict

    def slow_state_dict(self, *args, **kwargs):
        walked_on.append(threading.current_thread().name)
        time.sleep(0.3)  # as 100,000 tensors take
        return state_dict(self, *args, **kwargs)

    monkeypatch.setattr(type(model), "state_dict", slow_state_dict)
    actions = FilesActions(state, interactive=False)
    with qtbot.waitSignal(actions.diffReady, timeout=30_000) as ready:
        actions.start_diff(str(path))
        assert state.model_busy == "diff"  # until the tensors are taken
        with qtbot.waitSignal(state.errorOccurred) as refused:
            assert not state.execute(value_edit_command(state.session, ["0.bias"], "add", value=1.0))
        assert "wait until the diff task finishes" in refused.args[0]
    assert walked_on == [w for w in walked_on if w != threading.main_thread().name] and walked_on
    assert state.model_busy is None
    assert len(ready.args[0].changed) == 4
    assert state.execute(value_edit_command(state.session, ["0.bias"], "add", value=1.0))


def test_a_diff_replacing_a_running_export_keeps_the_model_busy_until_it_has_its_tensors(
    qtbot, state: AppState, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Starting a diff cancels the files task still running; that task's end released the busy
    state the new diff had just taken, and an edit could slip in before its tensors were taken."""
    import time

    path = tmp_path / "other.pt"
    torch.save(build_demo("mlp", seed=8).state_dict(), path)
    model = state.session.model
    state_dict = type(model).state_dict

    def slow_state_dict(self, *args, **kwargs):
        time.sleep(1.0)  # the checks below come well before it ends
        return state_dict(self, *args, **kwargs)

    monkeypatch.setattr(type(model), "state_dict", slow_state_dict)
    actions = FilesActions(state, interactive=False)
    actions.start_export(tmp_path / "out.safetensors")  # still taking the model's state_dict
    assert actions.worker.is_running
    with qtbot.waitSignal(actions.diffReady, timeout=30_000):
        actions.start_diff(str(path))
        qtbot.wait(50)  # the replaced export's end is delivered
        assert state.model_busy == "diff"
    assert state.model_busy is None


def test_the_load_weights_dialog_lists_a_groups_first_names_and_counts_the_rest(qtbot, many_tensors_state) -> None:
    """A row per tensor of a 100,000-tensor checkpoint took 0.4 s of the GUI thread to build."""
    from paramscope.gui.app.files_actions import LISTED_NAMES

    model = many_tensors_state(LISTED_NAMES + 1000).session.model
    dialog = LoadWeightsDialog(compare_weights(model, dict(model.state_dict())), "many.safetensors")
    qtbot.addWidget(dialog)
    matching = dialog.tree.topLevelItem(4)
    assert matching.text(0) == f"Matching ({LISTED_NAMES + 1000})"
    assert matching.childCount() == LISTED_NAMES + 1
    assert matching.child(0).text(0) == "blocks.0.layers.0.weight"
    assert matching.child(LISTED_NAMES).text(0) == "… and 1,000 more"
    assert dialog.tree.topLevelItem(0).text(0) == "Missing in the file (0)" and not dialog.tree.topLevelItem(0).childCount()
