"""`blinktrack eval` on a `blinktrack synth` ground-truth file needs no --size (issue 20): the
synth writer puts the image size into the header and the evaluation reads it from there."""

from __future__ import annotations

import numpy as np
import pytest

from blinktrack_ros.eval.evaluate import evaluate_paths
from blinktrack_ros.eval.tracks_io import header_image_size
from blinktrack_ros.synth.groundtruth import GroundTruth, write_gt_txt


def _gt(rng) -> GroundTruth:
    n, s = 5, 40
    times = np.arange(s, dtype=np.int64) * 10_000_000
    start = rng.uniform(30, 150, (1, n, 2))
    xy = start + np.arange(s)[:, None, None] * np.array([0.5, -0.2])
    vis = np.ones((s, n), np.int8)
    vis[10:15, 2] = 0  # one occlusion
    return GroundTruth(np.arange(n, dtype=np.int64), times, xy, vis, np.zeros(n, np.int64),
                       xy[0].copy(), np.zeros(n, np.int64))


def test_synth_gt_carries_its_size_and_eval_uses_it(tmp_path, rng) -> None:
    gt = _gt(rng)
    path = tmp_path / "seq_0000.gt.txt"
    write_gt_txt(gt, path, size=(200, 160))
    assert header_image_size(path) == (200, 160)
    rows = np.loadtxt(path, ndmin=2)
    pred = tmp_path / "seq_0000.txt"
    np.savetxt(pred, rows[:, :4], fmt=["%d", "%.9f", "%.4f", "%.4f"])
    result = evaluate_paths(pred, path)  # no image_size given
    mean = result["mean"]
    # the prediction is the ground truth: every track lives to its end, error 0
    assert mean["feature_age"] == pytest.approx(1.0)
    assert any(k.startswith("delta") for k in mean), sorted(mean)
    write_gt_txt(gt, path)  # an old file without the size: the clear error as before
    assert header_image_size(path) is None
    with pytest.raises(ValueError, match="--size"):
        evaluate_paths(pred, path)
