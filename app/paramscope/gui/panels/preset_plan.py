"""What the Presets dialog shows for a preset or its edited rules, computed without the event loop.

:func:`preset_view` makes a preset's rules for the model (when asked) and plans them: the lines
listing what each rule would touch, and the counts. On a checkpoint of 94,000 tensors that is
seconds of work, which the dialog runs in a worker; a small model's is instant and stays on the
GUI thread.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from paramscope.core.edit.session import Session
from paramscope.core.errors import ParamscopeError
from paramscope.core.init.presets import preset_rules, read_rules_file
from paramscope.core.init.rule_parse import InitRule, fill_input
from paramscope.core.init.rule_plans import plan
from paramscope.core.tasks import TaskState

LISTED_LINES = 2_000  # a list widget of 94,000 rows took its own second to fill


@dataclass
class PresetView:
    """The rules text a preset made (None: the editor's were planned), the lines of the plan,
    and what it would change; or the one-line ``error`` that stopped it."""

    made: str | None = None
    lines: list[str] = field(default_factory=list)
    changed: int = 0
    refused: int = 0
    error: str | None = None


def editor_rules(text: str, sample_input: str | None) -> list[InitRule]:
    """The rules of an editor's text, the sample input filled into data-dependent ones."""
    texts = read_rules_file(text)
    if not texts:
        raise ParamscopeError("no rules: pick a preset, or write SELECTOR=INIT(...) lines")
    return fill_input(texts, sample_input)


def preset_view(
    session: Session, preset: str | None, rules_text: str, sample_input: str | None, state: TaskState | None = None
) -> PresetView:
    """Plan ``preset``'s rules for the session's model (made first), or ``rules_text`` when
    ``preset`` is None. Nothing is applied; ``state`` may cancel between the steps."""
    made = None
    try:
        if preset is not None:
            made = rules_text = preset_rules(preset, session.model, session.report).text()
        if state is not None:
            state.check()
        the_plan = plan(session, editor_rules(rules_text, sample_input))
    except ParamscopeError as exc:
        return PresetView(made, error=str(exc))
    except ValueError as exc:  # a value an initializer rejects
        return PresetView(made, error=f"{type(exc).__name__}: {exc}")
    lines = the_plan.describe(session.report).splitlines()
    if len(lines) > LISTED_LINES:
        lines = lines[:LISTED_LINES] + [f"… and {len(lines) - LISTED_LINES:,} more lines (paramscope init --dry-run lists them all)"]
    refused = {name for _, name, _ in the_plan.refusals}
    changed = len([n for n in the_plan.touched if n not in refused])
    return PresetView(made, lines, changed, len(refused))
