"""What the window remembers (QSettings): geometry, dock layout and recent files across instances."""

from __future__ import annotations

from PySide6.QtCore import QSettings, Qt

from paramscope.gui.app.main_window import MainWindow
from paramscope.gui.app.opening import add_recent_file, recent_files


def test_layout_and_geometry_survive_a_restart(settings_file, qtbot):
    first = MainWindow(interactive=False, restore=True)
    qtbot.addWidget(first)
    first.resize(700, 520)  # within the offscreen screen: restoreGeometry clamps to it
    first.show()
    first.backward_dock.hide()  # the user closes a dock
    first.diagnostics_dock.setFloating(True)
    default_width = first.tree_dock.width()
    first.resizeDocks([first.tree_dock], [default_width - 40], Qt.Orientation.Horizontal)  # the user drags
    qtbot.waitUntil(lambda: first.tree_dock.width() < default_width)
    dragged_width = first.tree_dock.width()
    first.close()  # saves
    assert list(settings_file.rglob("*.ini")), "settings were written to the temporary INI file"

    second = MainWindow(interactive=False, restore=True)
    qtbot.addWidget(second)
    second.show()
    assert second.backward_dock.isHidden()
    assert second.diagnostics_dock.isFloating()
    assert (second.width(), second.height()) == (700, 520)
    qtbot.waitUntil(lambda: second.tree_dock.width() == dragged_width)  # not reset to the default share
    second.close()


def test_recent_files_are_kept_in_the_settings_file(settings_file):
    add_recent_file("/data/a.pt")
    add_recent_file("/data/b.safetensors")
    add_recent_file("/data/a.pt")  # reopening moves it to the top, no duplicate
    QSettings().sync()
    assert recent_files() == ["/data/a.pt", "/data/b.safetensors"]
    ini = next(settings_file.rglob("*.ini")).read_text()
    assert "b.safetensors" in ini


def test_a_window_without_restore_leaves_settings_alone(settings_file, qtbot):
    window = MainWindow(interactive=False)
    qtbot.addWidget(window)
    window.show()
    window.close()
    assert QSettings().value("window/state") is None


def test_a_recent_file_deleted_since_is_greyed_out(settings_file, qtbot, tmp_path):
    from paramscope.gui.app.window_menus import fill_recent_menu

    kept, deleted = tmp_path / "kept.pt", tmp_path / "deleted.pt"
    for path in (kept, deleted):
        path.write_bytes(b"x")
        add_recent_file(str(path))
    add_recent_file("demo:mlp")
    add_recent_file(f"{tmp_path / 'gone.py'}:build")
    deleted.unlink()
    window = MainWindow(interactive=False)
    qtbot.addWidget(window)
    fill_recent_menu(window)
    enabled = {a.text(): a.isEnabled() for a in window.recent_menu.actions() if a.text() and not a.isSeparator()}
    assert enabled == {
        f"{tmp_path / 'gone.py'}:build": False, "demo:mlp": True, str(deleted): False, str(kept): True, "Clear list": True,
    }


def test_a_cached_model_id_in_recent_files_is_not_greyed_out(settings_file, qtbot, tmp_path, monkeypatch):
    from paramscope.gui.app.window_menus import fill_recent_menu

    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    (tmp_path / "hub" / "models--org--cached" / "snapshots" / "abc").mkdir(parents=True)
    monkeypatch.chdir(tmp_path)
    add_recent_file("org/cached")
    add_recent_file("org/evicted")  # deleted from the cache since
    window = MainWindow(interactive=False)
    qtbot.addWidget(window)
    fill_recent_menu(window)
    enabled = {a.text(): a.isEnabled() for a in window.recent_menu.actions() if a.text() and not a.isSeparator()}
    assert enabled["org/cached"] and not enabled["org/evicted"]


def test_docks_saved_on_a_larger_screen_leave_the_table_and_plots_room(settings_file, qtbot):
    """Dock sizes saved at 1920 px left the table and plots 325 px of a 1280 px window on a
    laptop (the table showed its Name column only): the docks then get their fresh shares."""
    first = MainWindow(interactive=False, restore=True)
    qtbot.addWidget(first)
    first.resize(780, 560)  # within the offscreen screen
    first.show()
    first.resizeDocks([first.tree_dock, first.init_dock], [330, 330], Qt.Orientation.Horizontal)
    qtbot.waitUntil(lambda: first.tree_dock.width() > 250)  # the user's wide docks
    first.close()  # saves

    again = MainWindow(interactive=False, restore=True)  # as wide as when saved: kept as they are
    qtbot.addWidget(again)
    again.show()
    qtbot.wait(50)
    assert again.tree_dock.width() > 250
    again.close()

    fresh = MainWindow(interactive=False)  # what a first start at 600 px shows
    qtbot.addWidget(fresh)
    fresh.resize(600, 560)
    fresh.show()
    second = MainWindow(interactive=False, restore=True)
    qtbot.addWidget(second)
    second.resize(600, 560)  # the smaller screen
    second.show()
    qtbot.waitUntil(lambda: second.tree_dock.width() == fresh.tree_dock.width())
    assert second.centralWidget().width() == fresh.centralWidget().width()
