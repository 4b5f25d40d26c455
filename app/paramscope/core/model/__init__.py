"""The model as data: report, inspection, statistics and histograms, spectra, fans, diagnostics."""
