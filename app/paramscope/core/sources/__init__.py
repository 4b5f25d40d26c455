"""Turning a source string (a file, a demo, a Python file, an import) into an open model."""
