"""Evaluation: feature-age metrics (EC/EDS protocol), benchmark runner, plots."""
