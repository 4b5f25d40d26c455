"""Python syntax colours for the custom-initializer editor: keywords, strings, comments, numbers.

A small QSyntaxHighlighter (regular expressions per line, plus a state for triple-quoted strings
that span lines), enough that a user reads their function as in any editor. Colours come from
the palette, so they stay readable on the light and dark themes.
"""

from __future__ import annotations

import keyword
import re

from PySide6.QtCore import QEvent, QObject
from PySide6.QtGui import (
    QColor,
    QFont,
    QGuiApplication,
    QPalette,
    QSyntaxHighlighter,
    QTextCharFormat,
    QTextDocument,
)
from PySide6.QtWidgets import QWidget

KEYWORD_RE = re.compile(r"\b(?:" + "|".join(map(re.escape, keyword.kwlist)) + r")\b")
BUILTIN_RE = re.compile(r"\b(?:self|print|len|range|float|int|abs|min|max|sum|isinstance)\b")
NUMBER_RE = re.compile(r"\b(?:0[xXoObB][0-9a-fA-F_]+|\d[\d_]*\.?[\d_]*(?:[eE][+-]?\d+)?j?|\.\d[\d_]*(?:[eE][+-]?\d+)?)")
STRING_RE = re.compile(r"""[rRbBuUfF]{0,2}(?:'(?:[^'\\\n]|\\.)*'?|"(?:[^"\\\n]|\\.)*"?)""")
COMMENT_RE = re.compile(r"#[^\n]*")
DECORATOR_RE = re.compile(r"^\s*@[\w.]+")
TRIPLE_QUOTES = ('"""', "'''")
IN_TRIPLE = {'"""': 1, "'''": 2}  # block states: inside a triple-quoted string of this kind


def _is_dark() -> bool:
    app = QGuiApplication.instance()
    return app is not None and app.palette().color(QPalette.ColorRole.Base).lightness() < 128  # type: ignore[attr-defined]


def _format(color: str, *, bold: bool = False, italic: bool = False) -> QTextCharFormat:
    fmt = QTextCharFormat()
    fmt.setForeground(QColor(color))
    if bold:
        fmt.setFontWeight(QFont.Weight.Bold)
    fmt.setFontItalic(italic)
    return fmt


def formats(dark: bool) -> dict[str, QTextCharFormat]:
    """One format per token kind, for a light or dark background."""
    if dark:
        colors = {"keyword": "#cc99ff", "builtin": "#7fc8ff", "string": "#9ad27f", "comment": "#8c9296",
                  "number": "#f0b36b", "decorator": "#e0c46c"}  # fmt: skip
    else:
        colors = {"keyword": "#7a1fa2", "builtin": "#1358a8", "string": "#2e7d32", "comment": "#6b7378",
                  "number": "#b35900", "decorator": "#8a6d00"}  # fmt: skip
    return {
        "keyword": _format(colors["keyword"], bold=True),
        "builtin": _format(colors["builtin"]),
        "string": _format(colors["string"]),
        "comment": _format(colors["comment"], italic=True),
        "number": _format(colors["number"]),
        "decorator": _format(colors["decorator"]),
    }


class PythonHighlighter(QSyntaxHighlighter):
    """Colours Python source in a QTextDocument (see the module docstring)."""

    def __init__(self, document: QTextDocument, editor: QWidget | None = None) -> None:
        super().__init__(document)
        self.formats = formats(_is_dark())
        if editor is not None:  # a theme change repaints the editor: the colours follow
            editor.installEventFilter(self)

    def eventFilter(self, watched: QObject, event: QEvent) -> bool:  # noqa: N802
        if event.type() == QEvent.Type.PaletteChange and (dark := _is_dark()) != self.dark:
            self.formats = formats(dark)
            self.rehighlight()
        return False

    @property
    def dark(self) -> bool:
        """Whether the current colours are those for a dark background."""
        return self.formats["keyword"].foreground().color().lightness() > 128

    def highlightBlock(self, text: str) -> None:  # noqa: N802  (Qt's name)
        self.setCurrentBlockState(0)
        start = 0
        previous = self.previousBlockState()
        if previous in (1, 2):  # inside a triple-quoted string opened on an earlier line
            quote = '"""' if previous == 1 else "'''"
            end = text.find(quote)
            if end < 0:
                self.setFormat(0, len(text), self.formats["string"])
                self.setCurrentBlockState(previous)
                return
            start = end + 3
            self.setFormat(0, start, self.formats["string"])
        self._highlight_line(text, start)

    def _highlight_line(self, text: str, start: int) -> None:
        """Tokens from ``start``: strings and comments first, so a # in a string is not a comment."""
        position = start
        code_spans: list[tuple[int, int]] = []
        while position < len(text):
            triple = min(
                ((text.find(q, position), q) for q in TRIPLE_QUOTES if text.find(q, position) >= 0),
                default=(-1, ""),
            )
            string = STRING_RE.search(text, position)
            comment = COMMENT_RE.search(text, position)
            candidates = [(m.start(), kind, m) for kind, m in (("string", string), ("comment", comment)) if m]
            if triple[0] >= 0:
                candidates.append((triple[0], "triple", None))
            candidates = [c for c in candidates if c[1] != "string" or c[2].group()]
            if not candidates:
                break
            begin, kind, match = min(candidates, key=lambda c: (c[0], c[1] != "triple"))
            code_spans.append((position, begin))
            if kind == "comment":
                self.setFormat(begin, len(text) - begin, self.formats["comment"])
                position = len(text)
                break
            if kind == "triple":
                quote = triple[1]
                end = text.find(quote, begin + 3)
                if end < 0:
                    self.setFormat(begin, len(text) - begin, self.formats["string"])
                    self.setCurrentBlockState(IN_TRIPLE[quote])
                    return self._code(text, code_spans)
                self.setFormat(begin, end + 3 - begin, self.formats["string"])
                position = end + 3
                continue
            assert match is not None
            self.setFormat(begin, match.end() - begin, self.formats["string"])
            position = match.end()
        code_spans.append((position, len(text)))
        self._code(text, code_spans)

    def _code(self, text: str, spans: list[tuple[int, int]]) -> None:
        """Keywords, names, numbers and decorators in the parts that are not strings or comments."""
        for begin, end in spans:
            part = text[begin:end]
            for kind, pattern in (("number", NUMBER_RE), ("builtin", BUILTIN_RE), ("keyword", KEYWORD_RE)):
                for match in pattern.finditer(part):
                    if kind == "number" and match.start() > 0 and (part[match.start() - 1].isalnum() or part[match.start() - 1] == "_"):
                        continue  # the digits of a name such as conv2
                    self.setFormat(begin + match.start(), match.end() - match.start(), self.formats[kind])
            if begin == 0 and (decorator := DECORATOR_RE.match(part)):
                self.setFormat(decorator.start(), decorator.end() - decorator.start(), self.formats["decorator"])
