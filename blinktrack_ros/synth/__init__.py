"""Synthetic sequences with exact ground truth, and an ESIM-style event simulator."""
