"""Offline replay (`blinktrack track`) and the benchmark runner on a synthetic bag with GT."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from blinktrack_ros.bag.reader import iter_messages
from blinktrack_ros.bag.sequence import load_bag_sequence
from blinktrack_ros.bag.types import TRACK_ARRAY
from blinktrack_ros.cli import main
from blinktrack_ros.eval.benchmark import gt_seeds
from blinktrack_ros.eval.metrics import feature_age_metrics
from blinktrack_ros.eval.tracker import pipeline_tracker


@pytest.fixture(scope="module")
def synth_bag(tmp_path_factory) -> Path:
    from blinktrack_ros.synth.bagout import write_sequence_bag
    from blinktrack_ros.synth.config import preset
    from blinktrack_ros.synth.sequence import generate_sequence

    root = tmp_path_factory.mktemp("synth")
    seq = generate_sequence(preset("slow", duration_s=0.3), seed=11)
    write_sequence_bag(seq, root / "slow_0011", event_msg="dvs")
    return root / "slow_0011"


def _seed_file(bag: Path, tmp_path: Path) -> Path:
    gt = np.loadtxt(f"{bag}.gt.txt", ndmin=2)
    seeds = gt_seeds(gt[gt[:, 4] == 1])
    path = tmp_path / "seeds.txt"
    np.savetxt(path, seeds, fmt=["%d", "%.9f", "%.4f", "%.4f"])
    return path


def test_track_replay_writes_tracks_that_follow_ground_truth(synth_bag, tmp_path, capsys):
    out, rows_path = tmp_path / "out", tmp_path / "tracks.txt"
    seeds = _seed_file(synth_bag, tmp_path)
    assert main(["track", str(synth_bag), "--out", str(out), "--mode", "klt", "--seeds",
                 str(seeds), "--tracks-txt", str(rows_path), "--quiet"]) == 0
    assert "real time" in capsys.readouterr().out
    msgs = list(iter_messages(out, topics=["/blinktrack/tracks"]))
    assert msgs and all(m.msgtype == TRACK_ARRAY for m in msgs)
    assert all(len(m.msg.positions) == 2 * len(m.msg.ids) for m in msgs)
    pred = np.loadtxt(rows_path, ndmin=2)
    gt = np.loadtxt(f"{synth_bag}.gt.txt", ndmin=2)
    metrics = feature_age_metrics(pred, gt)
    assert metrics["inlier_ratio"] > 0.9 and metrics["feature_age"] > 0.8, metrics
    # the replay is the in-memory node logic: same rows as the benchmark's tracker
    seq = load_bag_sequence(synth_bag)
    same = pipeline_tracker()(seq, "klt", np.loadtxt(seeds, ndmin=2), 10_000_000)
    np.testing.assert_allclose(same, pred, atol=1e-4)


def test_predicted_mode_adds_causal_rows_between_frames(synth_bag, tmp_path):
    """`klt+p`: the rows of `klt` at its update times, and between them one row per window
    with the prediction from the previous update (the live node's output at that rate)."""
    seq = load_bag_sequence(synth_bag)
    seeds = np.loadtxt(_seed_file(synth_bag, tmp_path), ndmin=2)
    tracker = pipeline_tracker()
    plain = tracker(seq, "klt", seeds, 10_000_000)
    pred = tracker(seq, "klt+p", seeds, 5_000_000)  # frames at 50 Hz: 3 rows per gap
    key = {(int(r[0]), round(r[1], 9)) for r in plain}
    at_updates = np.array([(int(r[0]), round(r[1], 9)) in key for r in pred])
    assert at_updates.sum() == len(plain) and (~at_updates).sum() > 2 * len(plain)
    np.testing.assert_allclose(pred[at_updates], plain, atol=1e-9)
    for fid in np.unique(plain[:, 0])[:5]:
        t = pred[pred[:, 0] == fid, 1]
        assert np.diff(t).max() <= 0.005 + 1e-9  # a row at least every window
    # the rows between a track's first two updates lie on one line from the first update
    fid = plain[0, 0]
    t0, t1 = plain[plain[:, 0] == fid][:2, 1]
    mine = pred[pred[:, 0] == fid]
    between = mine[(mine[:, 1] > t0 + 1e-9) & (mine[:, 1] < t1 - 1e-9)]
    assert len(between) == 3
    steps = np.diff(np.vstack([plain[plain[:, 0] == fid][0, 2:4], between[:, 2:4]]), axis=0)
    np.testing.assert_allclose(steps, np.broadcast_to(steps[0], steps.shape), atol=1e-6)


def test_track_refined_topic_and_smoothed_rows(synth_bag, tmp_path):
    """`--refined` writes the one-frame-late tracks of the windows (online FixedLagSmoother);
    `--smooth frame` rows (offline, TrackLog) are the same positions, and the benchmark's
    `e-klt+f` gives them too; `--smooth all` also uses later frames."""
    seeds = _seed_file(synth_bag, tmp_path)
    common = [str(synth_bag), "--mode", "e-klt", "--seeds", str(seeds), "--quiet",
              "--frame-join-ms", "0"]
    rows = {}
    for smooth in ("none", "frame", "all"):
        out, txt = tmp_path / f"out_{smooth}", tmp_path / f"{smooth}.txt"
        extra = ["--refined"] if smooth == "frame" else []
        assert main(["track", *common, "--out", str(out), "--tracks-txt", str(txt),
                     "--smooth", smooth, *extra]) == 0
        rows[smooth] = np.loadtxt(txt, ndmin=2)
    msgs = list(iter_messages(tmp_path / "out_frame", topics=["/blinktrack/tracks_refined"]))
    assert msgs and all(m.msgtype == TRACK_ARRAY for m in msgs)
    seq = load_bag_sequence(synth_bag)
    frame_s = seq.frame_times_ns * 1e-9
    refined = []
    for m in msgs:
        t = m.msg.header.stamp.sec + m.msg.header.stamp.nanosec * 1e-9 - seq.time_origin_ns * 1e-9
        assert m.t_ns >= m.msg.header.stamp.sec * 10**9 + m.msg.header.stamp.nanosec
        pos = np.asarray(m.msg.positions).reshape(-1, 2)
        refined += [[i, t, *p] for i, p in zip(m.msg.ids, pos)]
    refined = np.array(refined)
    frame_rows = rows["frame"]
    between = (frame_rows[:, 1] < frame_s[-1] - 1e-6) & ~np.isin(np.round(frame_rows[:, 1], 6),
                                                                np.round(frame_s, 6))
    assert len(refined) == between.sum() > 20  # every window between two frames, once
    for r in refined:  # every refined window is the offline row at its time
        hit = frame_rows[(frame_rows[:, 0] == r[0]) & (np.abs(frame_rows[:, 1] - r[1]) < 1e-6)]
        assert len(hit) == 1
        np.testing.assert_allclose(hit[0, 2:4], r[2:4], atol=2e-3)  # float32 in the message
    # rows at frame times stay causal (the last row of each id and time, as the metrics
    # keep: a window ending at a frame's time is fused after it); between frames the
    # smoothing moves them
    causal = {(int(r[0]), round(r[1], 6)): r[2:4] for r in rows["none"]}
    assert len(causal) == len(rows["frame"]) == len(rows["all"])
    at_frame = np.isin(np.round(rows["frame"][:, 1], 6), np.round(frame_s, 6))
    assert at_frame.sum() > 20
    for r in rows["frame"][at_frame]:
        np.testing.assert_allclose(r[2:4], causal[(int(r[0]), round(r[1], 6))], atol=1e-9)
    moved = [np.abs(r[2:4] - causal[(int(r[0]), round(r[1], 6))]).max() for r in rows["frame"]]
    assert max(moved) > 0.05
    assert np.abs(rows["all"][:, 2:4] - rows["frame"][:, 2:4]).max() > 1e-3
    bench = pipeline_tracker()(seq, "e-klt+f", np.loadtxt(seeds, ndmin=2), 10_000_000)
    np.testing.assert_allclose(bench, rows["frame"], atol=1e-4)


def test_track_rejects_bad_usage(synth_bag, tmp_path, capsys):
    assert main(["track", str(tmp_path / "missing"), "--out", str(tmp_path / "o")]) == 2
    assert "no such bag" in capsys.readouterr().err
    assert main(["track", str(synth_bag), "--out", str(tmp_path / "o"), "--event-topic",
                 "/nope", "--mode", "klt"]) == 2
    assert "no topic '/nope'" in capsys.readouterr().err


def test_benchmark_command_writes_tables_plots_and_videos(synth_bag, tmp_path):
    out = tmp_path / "bench"
    assert main(["benchmark", str(synth_bag.parent), "--modes", "klt,e", "--untrained",
                 "--out", str(out)]) == 0
    results = json.loads((out / "results.json").read_text())
    assert set(results) == {"klt", "e"}
    klt = results["klt"]["mean"]
    assert klt["feature_age"] > 0.8
    assert 0.0 <= results["e"]["mean"]["feature_age"] <= 1.0
    for name in ("results.md", "results.csv", "age_vs_threshold.png", "klt/slow_0011.txt",
                 "videos/slow_0011_klt.gif"):
        assert (out / name).is_file(), name


def test_synth_epoch_keeps_track_and_eval_exact(tmp_path):
    """synth -> track -> eval at the synth epoch gives the feature age of the same sequence
    written at time 0: the rows file counts from the GT's origin (identical rows), and rows in
    absolute time (no GT beside the bag) are aligned by eval within float64 rounding."""
    import shutil

    from blinktrack_ros.eval.evaluate import evaluate_paths
    from blinktrack_ros.eval.tracks_io import header_time_origin_ns
    from blinktrack_ros.synth.bagout import SYNTH_EPOCH_NS, write_sequence_bag
    from blinktrack_ros.synth.config import preset
    from blinktrack_ros.synth.sequence import generate_sequence

    seq = generate_sequence(preset("slow", duration_s=0.15), seed=5)
    results, rows = {}, {}
    for name, origin in (("rel", 0), ("epoch", SYNTH_EPOCH_NS), ("abs", SYNTH_EPOCH_NS)):
        bag = tmp_path / name / "slow_0005"
        write_sequence_bag(seq, bag, time_origin_ns=origin)
        gt = tmp_path / name / "slow_0005.gt.txt"
        if name == "abs":  # no GT beside the bag: the rows keep the absolute stamps
            gt = shutil.move(gt, tmp_path / name / "gt.txt")
        rows_path = tmp_path / name / "slow_0005.txt"
        assert main(["track", str(bag), "--out", str(tmp_path / name / "out"), "--mode",
                     "klt", "--target-count", "30", "--tracks-txt", str(rows_path),
                     "--quiet"]) == 0
        rows[name] = np.loadtxt(rows_path, ndmin=2)
        results[name] = evaluate_paths(rows_path, gt)["mean"]
        first = next(iter_messages(tmp_path / name / "out", topics=["/blinktrack/tracks"]))
        assert first.t_ns >= origin and first.t_ns - origin < 10**9  # output bag: the stamps
    assert header_time_origin_ns(tmp_path / "epoch" / "slow_0005.txt") == SYNTH_EPOCH_NS
    np.testing.assert_array_equal(rows["epoch"], rows["rel"])  # the same relative rows
    assert rows["abs"][0, 1] > 1.7e9  # absolute seconds, rounded to ~0.2 us by float64
    np.testing.assert_allclose(rows["abs"][:, 1] - SYNTH_EPOCH_NS * 1e-9, rows["rel"][:, 1],
                               atol=1e-6)
    assert results["rel"]["feature_age"] > 0.5
    np.testing.assert_equal(results["epoch"], results["rel"])  # NaN == NaN (no occlusion)
    for key, value in results["rel"].items():
        assert results["abs"][key] == pytest.approx(value, rel=1e-6, abs=1e-9, nan_ok=True), key


def test_replay_of_evt3_packets_joined_gives_the_same_tracks(tmp_path, monkeypatch):
    """`blinktrack track` decodes runs of evt3 packets as one (bag.replay.JOIN_PACKETS): the
    pipeline's windows follow event time, so the tracks equal those of one packet per call."""
    import blinktrack_ros.bag.replay as replay_mod
    from blinktrack_ros.synth.bagout import write_sequence_bag
    from blinktrack_ros.synth.config import preset
    from blinktrack_ros.synth.sequence import generate_sequence

    seq = generate_sequence(preset("slow", duration_s=0.25), seed=12)
    bag = tmp_path / "slow_evt3"
    write_sequence_bag(seq, bag, event_msg="evt3")
    rows = {}
    for join in (1, 32):
        monkeypatch.setattr(replay_mod, "JOIN_PACKETS", join)
        path = tmp_path / f"tracks_{join}.txt"
        assert main(["track", str(bag), "--out", str(tmp_path / f"out_{join}"), "--mode",
                     "e", "--untrained", "--tracks-txt", str(path), "--quiet"]) == 0
        rows[join] = np.loadtxt(path, ndmin=2)
    assert rows[1].shape[0] > 100
    np.testing.assert_array_equal(rows[1], rows[32])


def test_track_with_the_onnxruntime_event_step(synth_bag, tmp_path):
    """`blinktrack track --event-runtime onnxruntime`: the float graph gives the rows of the
    torch trace; the shipped int8 graph runs and stays close."""
    pytest.importorskip("onnxruntime")
    pytest.importorskip("onnx")
    seeds = _seed_file(synth_bag, tmp_path)
    common = [str(synth_bag), "--mode", "e-klt", "--seeds", str(seeds), "--quiet",
              "--frame-join-ms", "0"]
    rows = {}
    for name, extra in (("torch", []), ("ort", ["--event-runtime", "onnxruntime"]),
                        ("int8", ["--event-runtime", "onnxruntime", "--event-onnx",
                                  "event_lite3_int8.onnx"])):
        txt = tmp_path / f"{name}.txt"
        assert main(["track", *common, "--out", str(tmp_path / name), "--tracks-txt", str(txt),
                     *extra]) == 0
        rows[name] = np.loadtxt(txt, ndmin=2)
    assert len(rows["torch"]) > 100
    # float rounding of another kernel library, carried by the recurrent state (max 0.004 px)
    np.testing.assert_allclose(rows["ort"], rows["torch"], atol=0.01)
    np.testing.assert_array_equal(rows["int8"][:, :2], rows["torch"][:, :2])
    gap = np.linalg.norm(rows["int8"][:, 2:4] - rows["torch"][:, 2:4], axis=1)
    assert 0 < np.median(gap) < 0.2  # int8 differs, a little
    assert main(["track", *common, "--out", str(tmp_path / "bad"), "--event-onnx",
                 "event_lite3_int8.onnx"]) == 2  # onnx_model without the runtime: usage error
