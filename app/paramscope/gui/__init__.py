"""PySide6 + pyqtgraph views over :mod:`paramscope.core`."""
