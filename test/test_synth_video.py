"""Sequences from high-frame-rate video: reference tracks, blurred APS frames, the CLI."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import cv2
import numpy as np
import pytest

from blinktrack_ros.synth.config import DAVIS
from blinktrack_ros.synth.video import VideoOptions, read_video_folder, video_sequence

SPEED = np.array([0.7, -0.3])  # px per video frame
RATE = 500.0


def _write_video(folder: Path, n: int = 60) -> np.ndarray:
    """A textured image translated by SPEED px per frame at RATE fps; returns the shifts."""
    rng = np.random.default_rng(0)
    tex = cv2.GaussianBlur(rng.uniform(0, 1, (220, 260)).astype(np.float32), (0, 0), 2.0)
    tex = (tex - tex.min()) / (tex.max() - tex.min())
    (folder / "images").mkdir(parents=True)
    shifts = np.arange(n)[:, None] * SPEED
    for k, (dx, dy) in enumerate(shifts):
        A = np.array([[1.0, 0, dx - 10], [0, 1.0, dy - 10]])
        img = cv2.warpAffine(tex, A, (160, 120), flags=cv2.INTER_CUBIC)
        cv2.imwrite(str(folder / "images" / f"f_{k:04d}.png"),
                    np.clip(img * 230 + 12, 0, 255).astype(np.uint8))
    np.savetxt(folder / "timestamps.txt", np.arange(n) / RATE, fmt="%.9f")
    return shifts


def test_reference_tracks_follow_the_true_motion(tmp_path):
    _write_video(tmp_path / "v")
    quiet = replace(DAVIS, read_noise=(0.0, 0.0), shot_noise=(0.0, 0.0))
    options = VideoOptions(frame_hz=50.0, exposure_s=0.01, n_tracks=40, sensor=quiet)
    seq, stats = video_sequence(tmp_path / "v", 0, options)
    gt = seq.gt
    start = gt.times_ns[0]
    frames, times = read_video_folder(tmp_path / "v")
    # truth: every point moves by SPEED * RATE px/s from where it started
    dt = (gt.times_ns - start)[:, None, None] * 1e-9
    truth = gt.xy[0][None] + dt * SPEED * RATE
    ok = gt.vis == 1
    err = np.linalg.norm(gt.xy - truth, axis=-1)[ok]
    inside = ((truth[..., 0] > 8) & (truth[..., 0] < 151) & (truth[..., 1] > 8)
              & (truth[..., 1] < 111))
    assert ok[-1].sum() >= 0.8 * inside[-1].sum() and inside[-1].sum() >= 10
    assert np.median(err) < 0.1 and np.percentile(err, 95) < 0.3
    # the stated reference error is of the same order as the true error
    assert stats["reference_fb_error_px_median"] < 0.2
    # APS frames: the mean of the video frames inside each exposure (true blur), 8-bit
    for f, t in zip(seq.frames, seq.frame_times_ns):
        sel = np.abs(times - t * 1e-9) <= 0.005 + 1e-9
        assert np.abs(f - frames[sel].mean(0)).max() <= 0.5 / 255 + 1e-6
    assert len(seq.events) > 1000 and np.all(np.diff(seq.events.t) >= 0)


def test_cli_from_video_writes_a_benchmark_sequence(tmp_path):
    from blinktrack_ros.bag.sequence import discover_bags
    from blinktrack_ros.cli import main

    _write_video(tmp_path / "v", n=40)
    assert main(["synth", "--out", str(tmp_path / "o"), "--from-video", str(tmp_path / "v"),
                 "--frame-hz", "50", "--exposure-ms", "8"]) == 0
    assert [b.name for b in discover_bags(tmp_path / "o")] == ["v_s0"]
    assert (tmp_path / "o" / "v_s0.reference.json").is_file()
    # rows stop where a reference track ends: no rows of unknown position
    rows = np.loadtxt(tmp_path / "o" / "v_s0.gt.txt", ndmin=2)
    assert np.all(rows[:, 4] == 1) and np.all(rows[:, 2:4] >= 0)
    assert np.unique(rows[:, 0]).size >= 10


def test_bad_video_folders_are_usage_errors(tmp_path):
    from blinktrack_ros.cli import main

    (tmp_path / "empty").mkdir()
    assert main(["synth", "--out", str(tmp_path / "o"), "--from-video",
                 str(tmp_path / "empty")]) == 2
    with pytest.raises(FileNotFoundError):
        read_video_folder(tmp_path / "missing")


def test_flow_upsampling_moves_content_halfway():
    from blinktrack_ros.synth.video import _interpolate

    rng = np.random.default_rng(1)
    tex = cv2.GaussianBlur(rng.uniform(0, 1, (140, 180)).astype(np.float32), (0, 0), 2.5)
    tex = (tex - tex.min()) / (tex.max() - tex.min())

    def shifted(dx):
        A = np.array([[1.0, 0, dx - 10], [0, 1.0, -10]])
        return cv2.warpAffine(tex, A, (150, 110), flags=cv2.INTER_CUBIC)

    a, b, half = shifted(0.0), shifted(4.0), shifted(2.0)
    (mid,) = _interpolate(a, b, 2)
    inner = np.s_[15:-15, 15:-15]
    err = np.abs(mid - half)[inner].mean()
    blend = np.abs(0.5 * (a + b) - half)[inner].mean()  # what linear ESIM interpolation sees
    assert err < 0.5 * blend
