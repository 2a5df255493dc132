"""The DAVIS-like sensor model against the physics it models (small images, short sequences).

Blur width = speed x exposure; background-activity rate; contrast-threshold mismatch
statistics; clipped HDR regions keep firing events but show no texture in the frames;
photoreceptor latency; bandwidth cap; camera homographies move the ground truth.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
from scipy.interpolate import CubicSpline

from blinktrack_ros.synth import esim
from blinktrack_ros.synth.config import DAVIS, PRESETS, SequenceConfig, preset
from blinktrack_ros.synth.esim import EsimConfig
from blinktrack_ros.synth.motion import SimilarityTrajectory
from blinktrack_ros.synth.scene import Layer, Scene, render
from blinktrack_ros.synth.sequence import (
    EXPOSURE_REF_S,
    HdrRegion,
    SensorDraw,
    _sensor_frames_and_events,
    generate_sequence,
    hdr_gain,
)

W, H = 64, 48
QUIET = EsimConfig(contrast_sigma=0.0, refractory_ns=0, log_floor=1e-6)


def _linear_scene(texture: np.ndarray, speed_px_s: float, duration_s: float,
                  start_dx: float = 0.0) -> Scene:
    """One opaque layer moving right at constant speed (texture centre at the image centre
    + start_dx at t = 0)."""
    t = np.array([-1.0, 0.0, duration_s + 1.0])
    cx, cy = (W - 1) / 2 + start_dx, (H - 1) / 2
    keys = np.array([[0.0, 0.0, cx + speed_px_s * ti, cy] for ti in t])
    anchor = np.array([(texture.shape[1] - 1) / 2, (texture.shape[0] - 1) / 2])
    traj = SimilarityTrajectory(CubicSpline(t, keys, axis=0), anchor)
    return Scene((Layer(texture.astype(np.float32), None, traj),), W, H)


def _draw(exposure_s: float, esim_config: EsimConfig = QUIET, frame_hz: float = 25.0,
          hdr=()) -> SensorDraw:
    """Fixed exposure, no noise; illuminance such that a frame shows the texture 1:1."""
    return SensorDraw(frame_hz, exposure_s, (exposure_s, exposure_s),
                      EXPOSURE_REF_S / exposure_s, 0.0, 0.0, esim_config, tuple(hdr))


def _config(duration_s: float, **sensor) -> SequenceConfig:
    return SequenceConfig(width=W, height=H, duration_s=duration_s,
                          sensor=replace(DAVIS, auto_exposure=False, **sensor))


def _run(scene, config, draw, seed=0):
    rng = np.random.default_rng(seed)
    return _sensor_frames_and_events(scene, config, draw, rng, rng, progress=False)


def _edge_spread(frames: np.ndarray) -> float:
    """Variance (px^2) of the horizontal derivative profile of a step edge, rows averaged."""
    prof = frames.mean(axis=1)  # (T, W)
    d = np.abs(np.diff(prof, axis=1))
    x = np.arange(d.shape[1]) + 0.5
    w = d / d.sum(axis=1, keepdims=True)
    mean = (w * x).sum(1, keepdims=True)
    return float(np.median((w * (x - mean) ** 2).sum(1)))


def test_blur_width_is_speed_times_exposure():
    """A step edge at v px/s seen for e seconds is a ramp of width v*e: the derivative's
    variance grows by (v e)^2 / 12 over the sharp frame's (box blur convolved)."""
    step = np.where(np.arange(400) < 200, 0.2, 0.8)[None].repeat(100, 0)
    speed = 300.0
    config = _config(0.09)
    widths = {}
    for exposure in (0.001, 0.010, 0.025):
        scene = _linear_scene(step, speed, 0.09, start_dx=-20.0)  # edge from x = 12 to 39
        frames, _, exposures, _, _ = _run(scene, config, _draw(exposure))
        assert np.allclose(exposures, exposure) and len(frames) == 3
        widths[exposure] = _edge_spread(frames)
    base = widths[0.001] - (speed * 0.001) ** 2 / 12  # the sharp (1 ms) frame's own spread
    for exposure in (0.010, 0.025):
        measured = np.sqrt(12 * (widths[exposure] - base))
        assert measured == pytest.approx(speed * exposure, rel=0.08), (exposure, measured)


def test_frame_stamp_is_the_exposure_centre():
    """The blurred edge sits where the sharp edge is at the stamp (centre of the exposure)."""
    step = np.where(np.arange(400) < 200, 0.2, 0.8)[None].repeat(100, 0)
    scene = _linear_scene(step, 300.0, 0.09, start_dx=-20.0)
    frames, stamps, _, _, _ = _run(scene, _config(0.09), _draw(0.020))
    for frame, t in zip(frames, stamps):
        sharp = render(scene, t * 1e-9)
        edge_blur = np.argmin(np.abs(frame.mean(0) - 0.5))
        edge_sharp = np.argmin(np.abs(sharp.mean(0) - 0.5))
        assert abs(int(edge_blur) - int(edge_sharp)) <= 1


def test_background_activity_rate_within_10_percent():
    """Static scene: only noise fires; its rate per pixel is the set rate (Poisson, 2 s)."""
    flat = np.full((100, 100), 0.5)
    rate = 0.7
    cfg = replace(QUIET, noise_rate_hz=rate)
    scene = _linear_scene(flat, 0.0, 2.0)
    _, _, _, events, _ = _run(scene, _config(2.0), _draw(0.01, cfg), seed=3)
    measured = len(events) / (W * H * 2.0)
    assert abs(measured / rate - 1) < 0.10
    assert abs(events.p.mean() - 0.5) < 0.05  # random polarity


def test_threshold_mismatch_statistics():
    """A global log-intensity ramp up then down: each pixel fires floor(dL / C_px) events,
    so the per-pixel thresholds recovered from the counts have the set mean and sigma."""
    sigma, c = 0.06, 0.25
    cfg = EsimConfig(contrast_pos=c, contrast_neg=c, contrast_sigma=sigma, refractory_ns=0,
                     log_floor=1e-6)
    n, span = 400, 6.0
    L = np.r_[np.linspace(0, span, n // 2), np.linspace(span, 0, n // 2)[1:]]
    times = np.arange(L.size, dtype=np.int64) * 1_000_000
    images = [np.full((H, W), 1e-3 * np.exp(v)) for v in L]
    ev = esim.simulate(images, times, cfg, seed=5)
    flat = ev.y.astype(np.int64) * W + ev.x
    for pol in (1, 0):
        counts = np.bincount(flat[ev.p == pol], minlength=W * H)
        assert counts.min() > 0
        c_hat = span / (counts + 0.5)  # middle of (span / (n + 1), span / n]
        assert c_hat.mean() == pytest.approx(c, abs=0.01)
        assert c_hat.std() == pytest.approx(sigma, rel=0.10)
    on = np.bincount(flat[ev.p == 1], minlength=W * H)
    off = np.bincount(flat[ev.p == 0], minlength=W * H)
    assert abs(np.corrcoef(on, off)[0, 1]) < 0.1  # C+ and C- drawn independently


def test_clipped_regions_fire_events_but_show_no_texture():
    rng = np.random.default_rng(2)
    texture = np.clip(0.5 + 0.3 * rng.normal(size=(300, 300)), 0.05, 0.95)
    import cv2

    texture = cv2.GaussianBlur(texture, (0, 0), 1.0)
    scene = _linear_scene(texture, 150.0, 0.15)
    bright = HdrRegion(np.array([14.0, 24.0]), np.zeros(2), np.array([9.0, 10.0]), 0.0, 150.0)
    dark = HdrRegion(np.array([50.0, 24.0]), np.zeros(2), np.array([9.0, 10.0]), 0.0, 2e-4)
    cfg = replace(QUIET, contrast_pos=0.1, contrast_neg=0.1, contrast_sigma=0.03)
    draw = _draw(0.010, cfg, hdr=(bright, dark))
    frames, _, _, events, _ = _run(scene, _config(0.15), draw)
    gain = hdr_gain((bright, dark), W, H, 0.0)
    # exposure fits the texture 1:1, so x50 clips every grey > 0.02 to white and x1e-3
    # rounds every grey < 1.9 to 0 in 8 bits
    in_bright, in_dark = gain > 50, gain < 1e-3
    normal = np.abs(np.log(gain)) < 0.05
    assert in_bright.sum() > 100 and in_dark.sum() > 100 and normal.sum() > 500
    for f in frames:
        assert np.all(f[in_bright] == 1.0)  # clipped white: no texture
        assert np.all(f[in_dark] == 0.0)  # clipped black
        assert f[normal].std() > 0.03  # texture where the exposure fits
    counts = np.bincount(events.y.astype(np.int64) * W + events.x, minlength=W * H)
    counts = counts.reshape(H, W)
    ref = counts[normal].mean()
    assert ref > 1
    # Log contrast is kept: clipped regions fire like the rest (within sampling scatter).
    assert counts[in_bright].mean() > 0.7 * ref and counts[in_dark].mean() > 0.7 * ref


def test_photoreceptor_latency_follows_the_cutoff():
    """A step I -> 2I: the low-passed log reaches ref + C at t = -ln(1 - C / ln 2) / (2 pi fc)
    with fc = cutoff * I (dim pixels answer later)."""
    C, cutoff = 0.2, 2000.0
    cfg = EsimConfig(contrast_pos=C, contrast_neg=C, contrast_sigma=0.0, refractory_ns=0,
                     cutoff_hz=cutoff, log_floor=1e-6)
    levels = np.array([0.02, 0.1, 0.5])[:, None].repeat(4, 1)  # (3, 4) pixels
    dt = 20_000  # 20 us renders
    times = np.arange(400, dtype=np.int64) * dt
    images = [levels if k < 10 else 2 * levels for k in range(times.size)]
    ev = esim.simulate(images, times, cfg, seed=0)
    for row, level in enumerate(levels[:, 0]):
        t_first = ev.t[(ev.y == row) & (ev.p == 1)].min() - times[9]
        fc = cutoff * 2 * level  # the filter runs at the new intensity
        expected = -np.log(1 - C / np.log(2)) / (2 * np.pi * fc) * 1e9
        assert t_first == pytest.approx(expected, rel=0.15, abs=2 * dt)


def test_bandwidth_cap_drops_and_counts():
    rng = np.random.default_rng(0)
    a, b = rng.uniform(0.05, 1, (H, W)), rng.uniform(0.05, 1, (H, W))
    cap = 1e6  # 1000 events per 1 ms step
    cfg = EsimConfig(contrast_sigma=0.0, refractory_ns=0, max_rate_ev_s=cap)
    state = esim.init_state(a, 0, cfg, rng)
    state, batch = esim.step(state, b, 1_000_000, cfg, rng)
    free = esim.step(esim.init_state(a, 0, replace(cfg, max_rate_ev_s=0), rng), b,
                     1_000_000, replace(cfg, max_rate_ev_s=0), rng)[1]
    assert len(free) > 1000
    assert len(batch) == 1000 and state.dropped == len(free) - 1000


def test_camera_rotation_moves_ground_truth_by_homography():
    """davis ground truth: points follow K R K^-1 of their world track; frames agree."""
    config = preset("davis", 96, 72, 0.1)
    seq = generate_sequence(config, seed=4)
    assert seq.scene.camera is not None
    gt, scene = seq.gt, seq.scene
    times_s = gt.times_ns * 1e-9
    Hs = scene.camera.homographies(times_s)
    assert np.allclose(Hs[0], np.eye(3), atol=1e-9)  # R(0) = I
    rot = np.linalg.inv(scene.camera.K) @ Hs @ scene.camera.K
    assert np.allclose(rot @ rot.transpose(0, 2, 1), np.eye(3), atol=1e-9)  # rotations
    # Frame exposure mean: the sensor frames are blurred and noisy, but on average the
    # sharp render at the stamp explains them (correlation) better than a shifted render.
    k = len(seq.frames) - 1
    sharp = render(scene, seq.frame_times_ns[k] * 1e-9)
    frame = seq.frames[k]
    good = (frame > 0.02) & (frame < 0.98)
    corr = np.corrcoef(frame[good], sharp[good])[0, 1]
    shifted = np.corrcoef(frame[:, 3:][good[:, 3:]], sharp[:, :-3][good[:, 3:]])[0, 1]
    assert corr > 0.5 and corr > shifted


def test_presets_validate_and_training_ranges_contain_test_ranges():
    for name in ("davis", "hdr", "lowlight", "occlusion", "fast", "random"):
        PRESETS[name].validate()
    train = PRESETS["random"].sensor
    for name in ("davis", "hdr", "lowlight"):
        test = PRESETS[name].sensor
        for field in ("frame_hz", "exposure_s", "contrast", "contrast_sigma", "noise_rate_hz",
                      "refractory_us", "illuminance"):
            lo, hi = getattr(test, field)
            assert getattr(train, field)[0] <= lo and hi <= getattr(train, field)[1], (name,
                                                                                      field)


def test_texture_splits_are_disjoint_and_deterministic():
    from blinktrack_ros.synth.textures import (
        photo_names,
        sample_textures,
        texture_split,
        textured_fraction,
    )

    train, test = set(photo_names("train")), set(photo_names("test"))
    assert train and test and not train & test
    assert not any("opencv" in n.lower() for n in train | test)  # reserved for evaluation
    assert texture_split("a/Elephants_3840x2160.jpg") == texture_split("b/Elephants.jpg")
    a, b = sample_textures(3, "train"), sample_textures(3, "train")
    assert len(a) == 6 and all(np.array_equal(x, y) for x, y in zip(a, b))
    c = sample_textures(3, "test")
    assert not any(x.shape == y.shape and np.array_equal(x, y) for x in a for y in c)
    assert all(textured_fraction(t) > 0.05 for t in a + c)  # no flat textures
