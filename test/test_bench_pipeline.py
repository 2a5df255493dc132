"""`blinktrack bench pipeline`: the JSON figures are there and consistent with the sequence.

Counts are checked against the generator's grids (frames at 30 Hz, 5 ms event windows after the
first frame), timings only for being positive and ordered (no speed assertions). The live part
needs the real rclpy and the built messages (marked `ros`).
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from blinktrack_ros.cli import main
from blinktrack_ros.nodes.latency import window_latencies_ms

SMALL = ["--size", "96x72", "--duration-s", "0.25", "--target-count", "12"]


def _run_json(capsys, extra: list[str]) -> dict:
    assert main(["bench", "pipeline", "--json", *SMALL, *extra]) == 0
    lines = [ln for ln in capsys.readouterr().out.splitlines() if ln.startswith("{")]
    assert len(lines) == 1
    return json.loads(lines[0])


def test_bench_pipeline_offline_figures(capsys) -> None:
    """Replay figures: call counts follow the sequence's frame and window grids."""
    fig = _run_json(capsys, ["--no-live"])
    assert fig["bench"] == "pipeline" and fig["size"] == "96x72"
    assert fig["frame_calls"] == math.floor(0.25 * 30) + 1  # frames at 0, 1/30, ... 0.25 s
    # Windows (t1 - 5 ms, t1] from the first frame (t = 0): complete once a later event comes.
    assert 0.25 / 0.005 - 2 <= fig["window_calls"] <= 0.25 / 0.005
    for key in ("pipeline_realtime_factor", "replay_realtime_factor", "window_ms_median",
                "pipeline_realtime_factor_cpu", "replay_realtime_factor_cpu",
                "frame_ms_median"):
        assert fig[key] > 0, key
    assert fig["window_ms_median"] <= fig["window_ms_p99"]
    # each window's patches are part of its observe call (so are their medians)
    assert 0 < fig["sbt_cpu_ms_median"] <= fig["event_observe_cpu_ms_median"]
    assert fig["fusion_cpu_ms_median"] > 0 and fig["pipeline_realtime_factor_two_free_cores"] > 0
    assert fig["frame_ms_median"] <= fig["frame_ms_p99"]
    assert 0 < fig["replay_pipeline_share"] <= 1
    # Input messages: the frames plus at most one event packet per millisecond.
    assert fig["frame_calls"] < fig["replay_messages_in"] <= fig["frame_calls"] + 250
    assert 0 < fig["tracks_alive_final"] <= 12
    assert "latency_ms_median" not in fig


def test_bench_pipeline_usage_errors(capsys, tmp_path) -> None:
    """A malformed --size or a missing weights file is a usage error (exit 2) naming it."""
    assert main(["bench", "pipeline", "--size", "96by72", "--no-live"]) == 2
    assert "WxH" in capsys.readouterr().err
    missing = str(tmp_path / "nope.pt")
    assert main(["bench", "pipeline", *SMALL, "--no-live", "--event-weights", missing]) == 2
    assert "nope.pt" in capsys.readouterr().err


def test_window_latencies_from_schedule() -> None:
    """Each window's latency runs from the packet that completes it to the window's tracks."""
    ms = 1_000_000
    # 1 ms event packets ending at 1..20 ms, a frame at 10 ms; published 7 ms after data time.
    msgs = [(k * ms, True, None) for k in range(1, 21)]
    msgs.insert(10, (10 * ms, False, None))
    walls = np.array([t + 7 * ms for t, _, _ in msgs], np.int64)
    windows = [5 * ms, 10 * ms, 15 * ms]
    # Window t1 completes with the packet ending at t1 + 1 ms; tracks come 2.5 ms after it.
    tracks = [(10 * ms, 17 * ms + ms // 2)]  # the frame's update at 10 ms comes first
    tracks += [(t1, t1 + ms + 7 * ms + 5 * ms // 2) for t1 in windows]
    lat = window_latencies_ms(msgs, walls, windows, tracks, from_ns=0)
    np.testing.assert_allclose(lat, [2.5, 2.5, 2.5])
    assert window_latencies_ms(msgs, walls, windows, tracks, from_ns=6 * ms).size == 2


@pytest.mark.ros
def test_bench_pipeline_live_latency(capsys) -> None:
    """The live run with real rclpy: windows come back from blinktrack_node with latencies."""
    pytest.importorskip("rclpy", reason="rclpy missing: run bash tools/build_msgs.sh .venv")
    pytest.importorskip("blinktrack_ros.msg", reason="messages not built")
    fig = _run_json(capsys, ["--no-replay", "--duration-s", "1.0", "--packet-ms", "2"])
    assert fig["latency_windows"] > 0 and fig["live_packet_ms"] == 2.0
    assert 0 < fig["latency_ms_median"] <= fig["latency_ms_p99"] <= fig["latency_ms_max"]
    assert fig["live_event_updates"] <= fig["data_windows"] == 200
    assert fig["node_torch_threads"] == 1 and fig["live_pace"] == 1.0
    assert fig["live_node_warm_up_s"] == 0.1  # the node's default warm-up
    assert 0 < fig["driver_cpu_s_per_data_s"] < 10 and 0 < fig["node_cpu_s_per_data_s"] < 10


def test_prophesee_like_stream_is_decoded_whole_from_evt3(tmp_path) -> None:
    """Noise events raise the stream to the asked rate; the evt3 bag replay decodes every one
    of them (nothing is dropped offline) and the event-only pipeline tracks."""
    from blinktrack_ros.bench.replay import (
        BenchSetup,
        bench_pipeline,
        bench_sequence,
        replay_figures,
    )

    setup = BenchSetup(width=96, height=72, duration_s=0.06, frame_hz=20.0, target_count=8,
                       mode="e", event_msg="evt3", event_rate_mev_s=2.0)
    seq = bench_sequence(setup)
    assert len(seq.events) == 120_000
    assert np.all(np.diff(seq.events.t) >= 0) and seq.events.t[0] > 0
    assert seq.events.t[-1] <= 60_000_000
    fig = replay_figures(seq, bench_pipeline(setup)[0], tmp_path, event_msg="evt3")
    assert fig["replay_events_decoded"] == len(seq.events)
    assert fig["replay_events_dropped_by_decoder"] == 0
    assert fig["replay_realtime_factor"] > 0


def test_bench_pipeline_rejects_a_bad_event_rate(capsys) -> None:
    assert main(["bench", "pipeline", *SMALL, "--no-live", "--event-rate-mev-s", "-1"]) == 2
    assert "--event-rate-mev-s" in capsys.readouterr().err
    assert main(["bench", "pipeline", *SMALL, "--no-replay", "--packet-ms", "0"]) == 2
    assert "--packet-ms" in capsys.readouterr().err
    assert main(["bench", "pipeline", *SMALL, "--no-replay", "--node-warm-up-s", "11"]) == 2
    assert "--node-warm-up-s" in capsys.readouterr().err
