"""Training data from the sensor presets: ground truth between samples, frame-step snippets,
parallel generation."""

from __future__ import annotations

import numpy as np
import pytest

from blinktrack_ros.synth.config import preset
from blinktrack_ros.synth.groundtruth import VISIBLE, track_points
from blinktrack_ros.synth.sequence import generate_sequence
from blinktrack_ros.train.data import (
    Augment,
    CachedSequence,
    DataSpec,
    load_or_generate,
    sample_snippets,
)


@pytest.fixture(scope="module")
def seq():
    return generate_sequence(preset("davis", 96, 72, 0.25), seed=5)


def _cached(s) -> CachedSequence:
    return CachedSequence(s.frames, s.frame_times_ns, s.events, s.gt.times_ns, s.gt.xy,
                          s.gt.vis, s.gt.query_t_ns)


def test_gt_between_samples_matches_the_scene(seq):
    cached = _cached(seq)
    times = np.arange(20, 200, 7, dtype=np.int64) * 1_000_000 + 500_000  # off the 1 kHz grid
    xy, vis = cached.gt_at(times)
    exact, exact_vis = track_points(seq.scene, seq.gt.layer, seq.gt.uv, times)
    ok = (vis == VISIBLE) & (exact_vis == VISIBLE)
    assert ok.mean() > 0.3
    assert np.abs(xy - exact)[ok].max() < 0.05  # linear interpolation over 1 ms
    on_grid = cached.gt_times_ns[[3, 10, 50]]
    assert np.array_equal(cached.gt_at(on_grid)[0], cached.gt_xy[[3, 10, 50]])
    with pytest.raises(ValueError):
        cached.gt_at(np.array([cached.gt_times_ns[-1] + 1]))


def test_image_snippets_step_over_the_real_frame_times(seq):
    cached = _cached(seq)
    rng = np.random.default_rng(0)
    period = int(np.diff(seq.frame_times_ns).mean())  # what a trainer may pass
    snippets = sample_snippets([cached], rng, 5, n_tracks=8, n_steps=2, step_ns=period,
                               aug=Augment.none(), with_events=False, n_frames=3)
    for sn in snippets:
        assert np.array_equal(sn.times_ns, sn.frame_times_ns)  # GT at each frame exactly
        exact, _ = track_points(seq.scene, seq.gt.layer, seq.gt.uv, sn.times_ns)
        # snippet tracks are a subset of the GT: each matches one exact track
        d = np.abs(sn.xy[:, :, None] - exact[:, None]).max(axis=(0, 3))
        assert np.all(d.min(axis=1) < 1e-9)


def test_parallel_generation_matches_sequential(tmp_path):
    spec = DataSpec(preset="davis", width=64, height=48, duration_s=0.08, seeds=(3, 4))
    one = load_or_generate(spec, None, progress=False)
    two = load_or_generate(spec, tmp_path, progress=False, workers=2)
    for a, b in zip(one, two):
        assert np.array_equal(a.frames, b.frames) and np.array_equal(a.events.t, b.events.t)
        assert np.array_equal(a.gt_xy, b.gt_xy)
    cached = load_or_generate(spec, tmp_path, progress=False)  # from the npz files
    assert np.array_equal(cached[1].frames, two[1].frames)
