"""The live node's per-input trace (nodes/trace.py) and the bench's stage medians from it."""

from __future__ import annotations

import time

import numpy as np

from blinktrack_ros.nodes.latency import trace_stages
from blinktrack_ros.nodes.trace import COLUMNS, NodeTrace


def test_trace_writes_rows_and_stage_medians_match_the_timestamps(tmp_path) -> None:
    path = tmp_path / "trace.csv"
    trace = NodeTrace(str(path))
    rng = np.random.default_rng(3)
    expected: dict[str, list[float]] = {"inbox": [], "before": [], "call": [], "cpu": []}
    base = time.monotonic_ns() - 2_000_000_000  # the trace stamps publishing with monotonic_ns
    for i in range(9):
        arrival = base + i * 50_000_000
        taken = arrival + int(rng.integers(0, 20_000_000))
        start = taken + int(rng.integers(0, 30_000_000))
        end = start + int(rng.integers(1_000_000, 60_000_000))
        cpu = int(rng.integers(1_000_000, 20_000_000))
        trace.taken_ns = taken
        trace.add("events", 10**9 + i * 5_000_000, 1, arrival, start, end, cpu)
        expected["inbox"].append((taken - arrival) * 1e-6)
        expected["before"].append((start - taken) * 1e-6)
        expected["call"].append((end - start) * 1e-6)
        expected["cpu"].append(cpu * 1e-6)
    trace.taken_ns = 0
    trace.add("events", 2 * 10**9, 0, 0, 0, 0)  # no window completed: not a latency sample
    trace.add("frame", 2 * 10**9, 1, 0, 5_000_000, 45_000_000, 30_000_000)
    trace.save()
    lines = path.read_text().splitlines()
    assert lines[0].split(",") == list(COLUMNS) and len(lines) == 1 + 11
    stages = trace_stages(path)
    assert stages["node_event_batches"] == 10
    assert np.isclose(stages["node_inbox_ms_median"], np.median(expected["inbox"]))
    assert np.isclose(stages["node_before_events_ms_median"], np.median(expected["before"]))
    assert np.isclose(stages["node_event_call_ms_median"], np.median(expected["call"]))
    assert np.isclose(stages["node_event_call_cpu_ms_median"], np.median(expected["cpu"]))
    assert np.isclose(stages["node_frame_call_ms_median"], 40.0)
    # published = when add() ran: after every end above, within the test's run time
    assert 0 < stages["node_publish_ms_median"] < 2_000 + 1e-6 * (time.monotonic_ns() - base)


def test_trace_is_off_without_a_path(tmp_path, monkeypatch) -> None:
    monkeypatch.delenv("BLINKTRACK_NODE_TRACE", raising=False)
    trace = NodeTrace()
    trace.add("events", 1, 1, 0, 0, 0)
    trace.save()
    assert not trace.enabled and trace.rows == []
