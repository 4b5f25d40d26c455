"""Changing a model: the session, its undo stack, value edits, loading weights, saving, the replay script."""
