"""The window's panels: tree, parameters, Initialize, Backward, diagnostics, checkpoint, ties."""
