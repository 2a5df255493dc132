"""StreamOrder (fusion_node's reorder buffer, no rclpy): arrays of two streams with different
delays come out in timestamp order as soon as no stream can still deliver an older one."""

from __future__ import annotations

import numpy as np

from blinktrack_ros.nodes.ordering import StreamOrder

MS = 1_000_000


def test_two_delayed_streams_come_out_sorted_and_early(rng) -> None:
    """Events every 10 ms arriving 35 ms late, frames every 30 ms arriving 80 ms late (plus
    jitter): the output is the sorted input, and nothing waits longer than one step of the
    slower stream beyond what its delay forces."""
    events = [("ev", t) for t in range(10, 1000, 10)]
    frames = [("im", t) for t in range(0, 1000, 30)]
    arrival = {(s, t): t + (35 if s == "ev" else 80) + rng.uniform(0, 3)
               for s, t in events + frames}
    arrival[("im", 0)] = 0.0  # the first frame (its seeds) comes first, as in the nodes
    order = StreamOrder(max_wait_ns=300 * MS)
    out, waited = [], []
    for s, t in sorted(arrival, key=arrival.get):
        for item in order.push(s, t * MS, (s, t)):
            out.append(item)
            waited.append(arrival[(s, t)] - arrival[item])
    assert [t for _, t in out] == sorted(t for _, t in out)
    assert order.late == 0 and len(out) + len(order) == len(arrival)
    assert len(order) <= 3  # only the newest ones wait for the other stream
    # an event array waits for the frame stream (80 ms delay, 30 ms step): about 45 + 30 ms
    assert np.max(waited) < 80


def test_a_stopped_stream_is_waited_for_at_most_max_wait() -> None:
    order = StreamOrder(max_wait_ns=50 * MS)
    assert order.push("im", 0, "f0") == ["f0"]
    assert order.push("ev", 10 * MS, "e10") == []  # the frame stream may still send t <= 10
    assert order.push("ev", 40 * MS, "e40") == []
    assert order.push("ev", 70 * MS, "e70") == ["e10"]  # 60 ms behind the newest: released
    assert order.push("im", 5 * MS, "late") == ["late"] and order.late == 1
