"""Plots: histogram, heatmap, signal propagation, spectrum, and exporting them."""
