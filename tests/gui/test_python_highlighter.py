"""The custom-initializer editor colours Python: keywords, strings, comments, numbers."""

from __future__ import annotations

from PySide6.QtGui import QColor, QTextDocument, QTextFormat
from PySide6.QtWidgets import QApplication, QPlainTextEdit

from paramscope.gui.panels.python_highlighter import PythonHighlighter, formats
from paramscope.gui.theme import apply_theme


def _colours(document: QTextDocument, line: int) -> list[str | None]:
    """The foreground colour of every character of ``line`` (None where not coloured)."""
    QApplication.processEvents()  # the highlighter colours the document on the next turn
    block = document.findBlockByNumber(line)
    out: list[str | None] = [None] * block.length()
    for fmt_range in block.layout().formats():
        color = fmt_range.format.foreground().color().name() if fmt_range.format.hasProperty(QTextFormat.Property.ForegroundBrush) else None
        for i in range(fmt_range.start, fmt_range.start + fmt_range.length):
            out[i] = color
    return out


def _kind_at(document: QTextDocument, line: int, text: str, fmts) -> str | None:
    block_text = document.findBlockByNumber(line).text()
    color = _colours(document, line)[block_text.index(text)]
    by_color = {f.foreground().color().name(): kind for kind, f in fmts.items()}
    return by_color.get(color) if color else None


SOURCE = '''def init_weight_(tensor):  # a comment with "quotes" and def
    scale = 0.02 * 3 + 1e-3
    label = "not # a comment, def"
    """a docstring
    over lines with def"""
    return tensor.normal_(0, scale)
'''


def test_keywords_strings_comments_numbers_are_coloured(qtbot):
    editor = QPlainTextEdit(SOURCE)
    qtbot.addWidget(editor)
    highlighter = PythonHighlighter(editor.document(), editor)
    fmts = highlighter.formats
    doc = editor.document()
    assert _kind_at(doc, 0, "def", fmts) == "keyword"
    assert _kind_at(doc, 0, "init_weight_", fmts) is None
    assert _kind_at(doc, 0, "# a comment", fmts) == "comment"
    assert _kind_at(doc, 0, "quotes", fmts) == "comment"  # inside the comment
    assert _kind_at(doc, 1, "0.02", fmts) == "number" and _kind_at(doc, 1, "1e-3", fmts) == "number"
    assert _kind_at(doc, 2, '"not', fmts) == "string"
    assert _kind_at(doc, 2, "# a comment", fmts) == "string"  # a # in a string is no comment
    assert _kind_at(doc, 4, "def", fmts) == "string"  # the second line of a docstring
    assert _kind_at(doc, 5, "return", fmts) == "keyword"
    assert _kind_at(doc, 5, "0,", fmts) == "number"


def test_the_initialize_panel_editor_is_highlighted(qtbot):
    from paramscope.gui.panels.init_panel import InitPanel
    from paramscope.gui.state import AppState

    state = AppState()
    assert state.open("demo:mlp")
    panel = InitPanel(state)
    qtbot.addWidget(panel)
    assert isinstance(panel.highlighter, PythonHighlighter)
    assert panel.highlighter.document() is panel.custom_editor.document()
    doc = panel.custom_editor.document()
    line = next(i for i in range(doc.blockCount()) if doc.findBlockByNumber(i).text().startswith("def "))
    assert _kind_at(doc, line, "def", panel.highlighter.formats) == "keyword"


def test_colours_follow_the_theme(qtbot):
    app = QApplication.instance()
    editor = QPlainTextEdit("def f(): return 1")
    qtbot.addWidget(editor)
    highlighter = PythonHighlighter(editor.document(), editor)
    try:
        apply_theme(app, "dark")
        qtbot.waitUntil(lambda: highlighter.dark)
        assert QColor(_colours(editor.document(), 0)[0]) == formats(True)["keyword"].foreground().color()
        apply_theme(app, "light")
        qtbot.waitUntil(lambda: not highlighter.dark)
    finally:
        apply_theme(app, "system")
