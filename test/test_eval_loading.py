"""EC/EDS sub-sequence loader on the real slider_depth recording, and the benchmark runner."""

from __future__ import annotations

import shutil

import numpy as np
import pytest

from blinktrack_ros.eval.benchmark import (
    BenchmarkConfig,
    default_event_window_s,
    discover_sequences,
    gt_seeds,
    run_benchmark,
)
from blinktrack_ros.eval.ec_eds import load_sequence
from blinktrack_ros.eval.tracks_io import write_tracks

N_EVENTS = 50_000  # events_chunk.txt of ec_slider_depth (SOURCES.md)
N_FRAMES = 5  # the events cover frames 0-4


def _frame_times(src) -> np.ndarray:
    return np.array([float(ln.split()[0]) for ln in (src / "images.txt").read_text().split("\n")
                     if ln.strip()])


@pytest.fixture
def subseq(shared_data, tmp_path):
    """A sub-sequence folder in the prepared layout, built from the real slider_depth data."""
    src = shared_data / "ec_slider_depth"
    seq = tmp_path / "slider_depth_0_4"
    (seq / "images_corrected").mkdir(parents=True)
    for i in range(N_FRAMES):
        name = f"frame_{i:08d}.png"
        shutil.copy(src / "images" / name, seq / "images_corrected" / name)
    times = _frame_times(src)[:N_FRAMES]
    (seq / "images.txt").write_text("".join(f"{t:.9f}\n" for t in times))
    shutil.copy(src / "events_chunk.txt", seq / "events.txt")
    # Ground truth named like the benchmark's (no frame range): 3 static points on frame times.
    gt = np.concatenate([np.stack([np.full(N_FRAMES, k), times, np.full(N_FRAMES, 40.0 + 50 * k),
                                   np.full(N_FRAMES, 90.0)], axis=1) for k in range(3)])
    write_tracks(tmp_path / "gt_tracks" / "slider_depth.gt.txt", gt)
    return seq


def test_loads_real_frames_events_and_gt(subseq):
    seq = load_sequence(subseq)
    assert seq.name == "slider_depth_0_4" and len(seq.frames) == N_FRAMES
    assert seq.frames[0].shape == (180, 240) and seq.frames[0].dtype == np.uint8
    assert seq.frame_times_ns[1] == 38_766_001  # images.txt: 0.038766001 s
    ev = seq.events
    assert len(ev) == N_EVENTS and seq.n_events_dropped == 0
    assert (ev.width, ev.height) == (240, 180)
    assert ev.t[0] == 3_811_000 and ev.x[0] == 96 and ev.y[0] == 133 and ev.p[0] == 0
    assert np.all(np.diff(ev.t) >= 0) and set(np.unique(ev.p)) <= {0, 1}
    assert ev.t.dtype == np.int64 and ev.x.dtype == np.uint16
    assert seq.gt is not None and seq.gt.shape == (3 * N_FRAMES, 4)


def test_h5_events_in_microseconds_match_text(subseq):
    h5py = pytest.importorskip("h5py")
    text = load_sequence(subseq).events
    (subseq / "events.txt").unlink()
    with h5py.File(subseq / "events.h5", "w") as f:
        f["t"] = (text.t // 1000).astype(np.int64)  # microseconds, as EDS stores them
        f["x"], f["y"], f["p"] = text.x, text.y, text.p
    h5 = load_sequence(subseq).events
    np.testing.assert_array_equal(h5.t, text.t // 1000 * 1000)
    np.testing.assert_array_equal(h5.x, text.x)
    np.testing.assert_array_equal(h5.p, text.p)


def test_original_layout_without_events_names_what_is_missing(shared_data):
    # ec_slider_depth has images/ + `t path` images.txt but its events file is events_chunk.txt
    with pytest.raises(FileNotFoundError, match="events.txt"):
        load_sequence(shared_data / "ec_slider_depth")


def test_discover_and_event_window(subseq, tmp_path):
    assert discover_sequences(tmp_path) == [subseq]
    assert discover_sequences(subseq) == [subseq]
    assert default_event_window_s(load_sequence(subseq)) == 0.010  # DAVIS240: EC
    with pytest.raises(FileNotFoundError, match="images_corrected"):
        discover_sequences(tmp_path / "gt_tracks")


def test_runner_end_to_end_with_gt_follower(subseq, tmp_path):
    """A tracker that returns the GT is perfect; one drifting 4 px per frame is worse."""
    seen = {}

    def tracker(seq, mode, seeds, window_ns):
        seen[mode] = (seeds.copy(), window_ns)
        pred = seq.gt[:, :4].copy()
        if mode == "drift":
            pred[:, 2] += 4.0 * np.round((pred[:, 1] - pred[0, 1]) / 0.0388)
        return pred

    out = tmp_path / "bench"
    config = BenchmarkConfig(modes=("perfect", "drift"))
    res = run_benchmark((load_sequence(p) for p in [subseq]), tracker, out, config,
                        progress=False)
    seeds, window_ns = seen["perfect"]
    np.testing.assert_array_equal(seeds, gt_seeds(load_sequence(subseq).gt))
    assert seeds.shape == (3, 4) and window_ns == 10_000_000
    perfect = res["perfect"]["mean"]
    assert perfect["feature_age"] == 1.0 and perfect["inlier_ratio"] == 1.0
    assert perfect["te_5"] == 0.0
    assert res["drift"]["mean"]["expected_feature_age"] < perfect["expected_feature_age"]
    for name in ("results.md", "results.csv", "results.json", "age_vs_threshold.png",
                 "bars_expected_feature_age.png", "perfect/slider_depth_0_4.txt",
                 "videos/slider_depth_0_4_drift.gif"):
        assert (out / name).stat().st_size > 0, name
    csv_lines = (out / "results.csv").read_text().splitlines()
    assert csv_lines[0].startswith("mode,sequence,feature_age") and len(csv_lines) == 5
