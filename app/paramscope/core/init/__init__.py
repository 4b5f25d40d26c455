"""Initialization: the initializer catalogue, rules and selectors, presets, theory, LSUV, schemes compared."""
