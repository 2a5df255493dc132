"""Input statistics for diagnostics (rates, drops, malformed input, latency) and their message.

`InputStats` and `ThrottledCounter` are plain Python with an explicit clock (testable without
ROS); `diagnostic_array` builds the `diagnostic_msgs/DiagnosticArray` a node publishes on
/diagnostics.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
import time
from typing import Any

import numpy as np

OK, WARN, ERROR, STALE = 0, 1, 2, 3  # diagnostic_msgs/DiagnosticStatus levels


@dataclass
class InputStats:
    """Counters of one input topic over the node's life, plus a sliding rate/latency window.

    Attributes:
        window_s: length of the window for the rate and the latency percentiles.
        received, malformed, dropped: totals (dropped: e.g. windows skipped when behind).
    """

    window_s: float = 5.0
    received: int = 0
    malformed: int = 0
    dropped: int = 0
    _times: deque = field(default_factory=deque)
    _latencies: deque = field(default_factory=deque)

    def on_message(self, now_s: float, latency_s: float | None = None) -> None:
        """Count one received message at monotonic time now_s (latency: stamp to processing)."""
        self.received += 1
        self._times.append(now_s)
        if latency_s is not None:
            self._latencies.append((now_s, latency_s))
        self._trim(now_s)

    def add_latency(self, now_s: float, latency_s: float) -> None:
        """Record one latency (s) measured at monotonic time now_s."""
        self._latencies.append((now_s, latency_s))
        self._trim(now_s)

    def _trim(self, now_s: float) -> None:
        while self._times and self._times[0] < now_s - self.window_s:
            self._times.popleft()
        while self._latencies and self._latencies[0][0] < now_s - self.window_s:
            self._latencies.popleft()

    def rate_hz(self, now_s: float) -> float:
        """Messages per second over the window ending at now_s."""
        self._trim(now_s)
        if len(self._times) < 2:
            return 0.0
        span = max(now_s - self._times[0], self._times[-1] - self._times[0])
        return (len(self._times) - 1) / span if span > 0 else 0.0

    def latency_ms(self, now_s: float) -> tuple[float, float]:
        """(median, p99) latency in ms over the window; NaN when none was measured."""
        self._trim(now_s)
        if not self._latencies:
            return float("nan"), float("nan")
        lat = np.array([v for _, v in self._latencies]) * 1e3
        return float(np.median(lat)), float(np.percentile(lat, 99))

    def values(self, now_s: float, prefix: str) -> dict[str, str]:
        """Key/values for the diagnostics message, keys prefixed by the input's name."""
        med, p99 = self.latency_ms(now_s)
        return {f"{prefix} rate (Hz)": f"{self.rate_hz(now_s):.2f}",
                f"{prefix} received": str(self.received),
                f"{prefix} malformed": str(self.malformed),
                f"{prefix} dropped": str(self.dropped),
                f"{prefix} latency median (ms)": f"{med:.2f}",
                f"{prefix} latency p99 (ms)": f"{p99:.2f}"}


class ThrottledCounter:
    """Counts events (e.g. malformed messages) and says when to log: at most once per period.

    `hit(text)` returns the line to log (with the count suppressed since the last line) or None.
    """

    def __init__(self, period_s: float, clock: Callable[[], float] = time.monotonic) -> None:
        """Log at most once per `period_s` seconds of `clock`."""
        self.period_s, self._clock = float(period_s), clock
        self.total = 0
        self._since_log = 0
        self._last_log: float | None = None

    def hit(self, text: str) -> str | None:
        """Count one occurrence; the log line when one is due, else None."""
        self.total += 1
        self._since_log += 1
        now = self._clock()
        if self._last_log is not None and now - self._last_log < self.period_s:
            return None
        line = text if self._since_log == 1 else (
            f"{text} ({self._since_log - 1} more since the last report, {self.total} in total)")
        self._last_log, self._since_log = now, 0
        return line


def diagnostic_array(name: str, hardware_id: str, level: int, message: str,
                     values: dict[str, str], stamp: Any) -> Any:
    """One DiagnosticStatus with the given key/values in a DiagnosticArray stamped `stamp`."""
    from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue

    status = DiagnosticStatus(level=bytes([level]), name=name, message=message,
                              hardware_id=hardware_id,
                              values=[KeyValue(key=k, value=v) for k, v in values.items()])
    out = DiagnosticArray(status=[status])
    out.header.stamp = stamp
    return out
