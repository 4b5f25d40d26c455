"""Help > About: what this is, and the versions a bug report needs."""

from __future__ import annotations

import platform

from PySide6.QtCore import Qt
from PySide6.QtWidgets import QMessageBox, QWidget


def versions() -> dict[str, str]:
    """Versions of paramscope and what it runs on (torch, Qt, PySide6, pyqtgraph, Python)."""
    import pyqtgraph
    import PySide6
    import torch
    from PySide6.QtCore import qVersion

    import paramscope

    return {
        "paramscope": paramscope.__version__,
        "torch": torch.__version__,
        "Qt": qVersion(),
        "PySide6": PySide6.__version__,
        "pyqtgraph": pyqtgraph.__version__,
        "Python": platform.python_version(),
    }


def about_text() -> str:
    rows = "".join(f"<tr><td>{name}</td><td>&nbsp;{version}</td></tr>" for name, version in versions().items())
    return (
        "<h3>paramscope</h3>"
        "<p>A desktop explorer for the parameters of PyTorch models: module tree, statistics, "
        "histograms, initialization with undo, gradients, tied parameters, state_dict export.</p>"
        f"<table>{rows}</table>"
    )


def show_about(parent: QWidget | None) -> QMessageBox:
    """Open the About box (window-modal, not blocking) and return it."""
    box = QMessageBox(parent)
    box.setWindowTitle("About paramscope")
    box.setTextFormat(Qt.TextFormat.RichText)
    box.setText(about_text())
    box.setStandardButtons(QMessageBox.StandardButton.Ok)
    box.open()
    return box
