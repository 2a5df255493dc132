"""Diagnostics counters (ROS-free) and the DiagnosticArray they fill (with rclpy)."""

from __future__ import annotations

import numpy as np
import pytest

from blinktrack_ros.nodes.diagnostics import WARN, InputStats, ThrottledCounter, diagnostic_array


class FakeClock:
    def __init__(self) -> None:
        self.t = 100.0

    def __call__(self) -> float:
        return self.t


def test_throttled_counter_logs_once_per_period() -> None:
    """Every hit is counted; lines come at most once per period and report the suppressed."""
    clock = FakeClock()
    counter = ThrottledCounter(5.0, clock)
    lines = []
    for _ in range(10):  # 10 hits 1 s apart
        lines.append(counter.hit("bad packet"))
        clock.t += 1.0
    assert counter.total == 10
    logged = [line for line in lines if line]
    assert lines[0] == "bad packet" and lines[5] is not None and len(logged) == 2
    assert "4 more since the last report, 6 in total" in lines[5]


def test_input_stats_rate_and_latency() -> None:
    """A 20 Hz stream over the 5 s window reads 20 Hz; latency percentiles of known values."""
    stats = InputStats(window_s=5.0)
    lat = np.linspace(0.001, 0.1, 200)
    for k in range(200):  # 10 s at 20 Hz; only the last 5 s count
        stats.on_message(k * 0.05, latency_s=float(lat[k]))
    now = 199 * 0.05 + 0.025  # the window holds t >= 4.975 s: the last 100 samples
    assert stats.received == 200
    assert stats.rate_hz(now) == pytest.approx(20.0, rel=0.02)
    med, p99 = stats.latency_ms(now)
    recent = lat[-100:] * 1e3
    assert med == pytest.approx(np.median(recent)) and p99 == pytest.approx(
        np.percentile(recent, 99))
    assert stats.values(now, "events")["events received"] == "200"
    assert stats.rate_hz(now + 60.0) == 0.0  # a stopped stream reads 0


@pytest.mark.ros
def test_diagnostic_array_message() -> None:
    """The key/values land in one DiagnosticStatus with the level as a byte."""
    pytest.importorskip("rclpy")
    from builtin_interfaces.msg import Time

    msg = diagnostic_array("blinktrack_ros: x", "/x", WARN, "1 malformed",
                           {"events malformed": "1"}, Time(sec=3))
    status = msg.status[0]
    assert status.level == bytes([WARN]) and msg.header.stamp.sec == 3
    assert [(kv.key, kv.value) for kv in status.values] == [("events malformed", "1")]
