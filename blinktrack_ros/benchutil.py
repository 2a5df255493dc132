"""Compatibility alias: the helpers live in `blinktrack_ros.bench.util` (import from there)."""

from blinktrack_ros.bench.util import machine_info, report, time_calls

__all__ = ["machine_info", "report", "time_calls"]
