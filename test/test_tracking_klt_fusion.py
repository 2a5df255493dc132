"""Seeding + KLT + fusion engine on real slider_depth frames (the CPU baseline loop)."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from blinktrack_ros.tracking.engine import FusionConfig, FusionEngine
from blinktrack_ros.tracking.klt import KltSource
from blinktrack_ros.tracking.seeding import SeedConfig, detect_seeds
from blinktrack_ros.tracking.tracks import TrackStatus


@pytest.mark.data
def test_klt_fusion_loop_on_slider_depth(shared_data: Path) -> None:
    root = shared_data / "ec_slider_depth"
    rows = (root / "images.txt").read_text().split("\n")[:10]
    stamps = [round(float(r.split()[0]) * 1e9) for r in rows]
    frames = [cv2.imread(str(root / r.split()[1]), cv2.IMREAD_GRAYSCALE) for r in rows]
    h, w = frames[0].shape
    engine = FusionEngine(FusionConfig(q=1e4, image_size=(w, h), lost_after_s=0.2))
    klt = KltSource()
    seed_cfg = SeedConfig(target_count=40)
    ids = engine.add_tracks(stamps[0], detect_seeds(frames[0], np.zeros((0, 2)), seed_cfg))
    applied = 0
    for t_ns, frame in zip(stamps, frames):
        track_ids, predicted = engine.predict_positions(t_ns)
        obs = klt.observe(t_ns, frame.astype(np.float32) / 255.0, track_ids, predicted)
        result = engine.apply(obs)
        assert result.unknown_ids == 0 and result.stale == 0 and result.invalid == 0
        applied += result.applied
        assert klt.set_previous_points(*engine.predict_positions(t_ns)) == len(track_ids)
        snap = engine.snapshot(t_ns)
        # the fused position stays within a few sigma of a confident KLT observation
        seen = obs.visibility > 0.5
        rows = np.searchsorted(snap.ids, obs.ids[seen])
        err = snap.positions_px[rows] - obs.positions_px[seen]
        sigma = np.sqrt(obs.covariances[seen, 0, 0] + snap.covariances[rows, 0, 0])
        assert np.all(np.abs(err) <= 4 * sigma[:, None])
    alive = snap.status != TrackStatus.LOST
    assert applied >= 0.8 * 9 * len(ids) and alive.mean() > 0.8
    # camera slides along +x (groundtruth.txt): fused velocities point to -x, not vertically
    vx, vy = np.median(snap.velocities_px_s[alive], axis=0)
    assert vx < -20 and abs(vy) < 0.2 * abs(vx)
