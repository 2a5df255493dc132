"""dv-processing's event+frame LK tracker as the `dv` baseline, against synthetic ground truth."""

from __future__ import annotations

from dataclasses import replace
import json
from types import SimpleNamespace

import numpy as np
import pytest

from blinktrack_ros.eval.benchmark import gt_seeds
from blinktrack_ros.eval.dv_baseline import match_seeds


def test_match_seeds_is_greedy_unique_and_bounded():
    seeds = np.array([[10.0, 10.0], [10.9, 10.0], [50.0, 50.0]])
    dv_tracks = {7: (10.5, 10.0), 8: (12.0, 10.0), 9: (80.0, 80.0), 3: (10.2, 10.0)}
    # seed 0 takes 3 (0.2 px), seed 1 then the nearest free one, 7 (0.4 px); seed 2 none
    assert match_seeds(seeds, dv_tracks, taken=set(), radius_px=3.0) == [3, 7, None]
    # with 3 and 7 taken only 8 is left: the closer seed (1, 1.1 px) gets it
    assert match_seeds(seeds, dv_tracks, taken={3, 7}, radius_px=3.0) == [None, 8, None]
    assert match_seeds(seeds, {}, taken=set(), radius_px=3.0) == [None, None, None]


@pytest.fixture(scope="module")
def synth_fast(tmp_path_factory):
    from blinktrack_ros.synth.config import preset
    from blinktrack_ros.synth.groundtruth import read_gt_txt, write_gt_txt
    from blinktrack_ros.synth.sequence import generate_sequence

    # fast motion on the simple sensor model (sharp 50 Hz frames, no sensor noise)
    s = generate_sequence(replace(preset("fast", duration_s=0.3), sensor=None,
                                  camera_shake=None), seed=11)
    path = tmp_path_factory.mktemp("dv") / "fast_0011.gt.txt"
    write_gt_txt(s.gt, path)
    return SimpleNamespace(name="fast_0011", frames=list(s.frames),
                           frame_times_ns=s.frame_times_ns, events=s.events,
                           gt=read_gt_txt(path))


def test_dv_tracks_follow_ground_truth(synth_fast):
    pytest.importorskip("dv_processing")
    from blinktrack_ros.eval.dv_baseline import DvTracker
    from blinktrack_ros.eval.evaluate import sequence_metrics

    seq, tracker = synth_fast, DvTracker()
    seeds = gt_seeds(seq.gt)
    pred = tracker(seq, "dv", seeds, 10_000_000)
    assert tracker.stats["seeds"] == seeds.shape[0]
    assert tracker.stats["matched"] >= 0.9 * seeds.shape[0]
    assert tracker.stats["events_dropped_out_of_order"] == 0
    # every track starts exactly at its seed
    first = pred[np.lexsort((pred[:, 1], pred[:, 0]))]
    _, idx = np.unique(first[:, 0], return_index=True)
    np.testing.assert_allclose(first[idx][:, 2:4], seeds[:, 2:4])
    # at the last frame, visible tracks are within 2 px of GT though GT moved much further
    t_end = seq.frame_times_ns[-1] * 1e-9
    gt_end = seq.gt[(np.abs(seq.gt[:, 1] - t_end) < 1e-6) & (seq.gt[:, 4] == 1)]
    pr_end = pred[np.abs(pred[:, 1] - t_end) < 1e-6]
    common, gi, pi = np.intersect1d(gt_end[:, 0], pr_end[:, 0], return_indices=True)
    assert common.size >= 20
    err = np.linalg.norm(gt_end[gi, 2:4] - pr_end[pi, 2:4], axis=1)
    moved = np.linalg.norm(gt_end[gi, 2:4] - seeds[np.searchsorted(seeds[:, 0], common), 2:4],
                           axis=1)
    assert np.median(err) < 2.0 and np.median(moved) > 10.0
    metrics = sequence_metrics(seq.name, pred, seq.gt, image_size=(240, 180))
    assert metrics["inlier_ratio"] > 0.8 and metrics["te_5"] < 2.0


def test_benchmark_accepts_mode_dv(tmp_path):
    pytest.importorskip("dv_processing")
    from blinktrack_ros.cli import main
    from blinktrack_ros.synth.bagout import write_sequence_bag
    from blinktrack_ros.synth.config import preset
    from blinktrack_ros.synth.sequence import generate_sequence

    seq = generate_sequence(preset("slow", duration_s=0.2), seed=3)
    write_sequence_bag(seq, tmp_path / "data" / "slow_0003", event_msg="dvs")
    out = tmp_path / "bench"
    assert main(["benchmark", str(tmp_path / "data"), "--modes", "dv,klt", "--no-render",
                 "--out", str(out)]) == 0
    results = json.loads((out / "results.json").read_text())
    assert set(results) == {"dv", "klt"}
    assert results["dv"]["mean"]["feature_age"] > 0.8
    assert (out / "dv" / "slow_0003.txt").is_file()


def test_out_of_order_events_are_dropped_and_counted():
    pytest.importorskip("dv_processing")
    from blinktrack_ros.eval.dv_baseline import _event_store

    ev = SimpleNamespace(t=np.array([3000, 1000, 5000, 5000], np.int64),
                         x=np.array([1, 2, 3, 4], np.uint16), y=np.array([5, 6, 7, 8], np.uint16),
                         p=np.array([1, 0, 1, 0], np.uint8))
    store, dropped = _event_store(ev, 0, 4)
    assert dropped == 1 and store.size() == 3
    assert store.timestamps().tolist() == [3, 5, 5]  # microseconds
    assert store.coordinates().tolist() == [[1, 5], [3, 7], [4, 8]]


def test_rows_shift_onto_the_seed_and_hold_after_loss():
    from blinktrack_ros.eval.dv_baseline import DvTracker

    times = np.arange(5) * 10_000_000  # 5 frames, 10 ms apart
    per_frame = [{5: (10.0, 20.0)}, {5: (12.0, 20.0)}, {5: (14.0, 21.0)}, {}, {}]
    seed = np.array([7, 0.0, 11.0, 20.0])  # 1 px right of dv track 5
    held = DvTracker._rows(seed, 5, per_frame, times, 0, hold=True)
    np.testing.assert_allclose(held[:, 1], times * 1e-9)
    np.testing.assert_allclose(held[:, 2:], [[11, 20], [13, 20], [15, 21], [15, 21], [15, 21]])
    ended = DvTracker._rows(seed, 5, per_frame, times, 0, hold=False)
    np.testing.assert_allclose(ended, held[:3])
    static = DvTracker._rows(seed, None, per_frame, times, 0, hold=True)
    np.testing.assert_allclose(static[:, 2:], np.tile([11.0, 20.0], (5, 1)))
    assert (static[:, 0] == 7).all()


def test_mode_dv_without_dv_processing_says_how_to_install(tmp_path, monkeypatch, capsys):
    import sys

    from blinktrack_ros.cli import main

    seq = tmp_path / "seq_0_10"
    (seq / "images_corrected").mkdir(parents=True)
    (seq / "images.txt").write_text("0.0 images_corrected/0.png\n")
    monkeypatch.setitem(sys.modules, "dv_processing", None)  # import fails as if absent
    assert main(["benchmark", str(seq), "--modes", "klt,dv", "--out", str(tmp_path / "o")]) == 2
    assert "pip install dv-processing" in capsys.readouterr().err
