"""SBT-Max: against a direct per-event reference (loops) and its defining properties."""

from __future__ import annotations

import numpy as np
import pytest

from blinktrack_ros.events.batch import EventBatch
from blinktrack_ros.events.sbt import sbt_max_frame, sbt_max_patches

W, H = 97, 61  # odd sizes: no accidental alignment with the spatial grid


def random_events(rng, n, t_end=1_000_000, width=W, height=H) -> EventBatch:
    t = np.sort(rng.integers(0, t_end, n)).astype(np.int64)
    t[n // 2:n // 2 + 5] = t[n // 2]  # equal times happen
    return EventBatch(rng.integers(0, width, n).astype(np.uint16),
                      rng.integers(0, height, n).astype(np.uint16), t,
                      rng.integers(0, 2, n).astype(np.uint8), width, height)


def reference_frame(ev: EventBatch, t1: int, dt: int, bins: int) -> np.ndarray:
    """Direct definition, one event at a time with exact fractions."""
    out = np.zeros((2 * bins, ev.height, ev.width), np.float64)
    t0 = t1 - dt
    for x, y, t, p in zip(ev.x.tolist(), ev.y.tolist(), ev.t.tolist(), ev.p.tolist()):
        if not t0 < t <= t1:
            continue
        b = 0
        while t - t0 > (b + 1) * dt / bins:  # bin b holds (b dt/B, (b+1) dt/B]
            b += 1
        c = 2 * b + p
        out[c, y, x] = max(out[c, y, x], (t - t0) / dt)
    return out.astype(np.float32)


def reference_patch(ev: EventBatch, t1, dt, bins, centre, size) -> np.ndarray:
    frame = reference_frame(ev, t1, dt, bins)
    cx, cy = (int(v) for v in np.round(centre))
    out = np.zeros((2 * bins, size, size), np.float32)
    for r in range(size):
        for c in range(size):
            sx, sy = cx - size // 2 + c, cy - size // 2 + r
            if 0 <= sx < ev.width and 0 <= sy < ev.height:
                out[:, r, c] = frame[:, sy, sx]
    return out


@pytest.mark.parametrize("bins", [1, 5])
def test_frame_matches_reference(rng, bins):
    ev = random_events(rng, 3000)
    t1, dt = 800_000, 500_000
    got = sbt_max_frame(ev, t1, dt, bins)
    assert got.shape == (2 * bins, H, W) and got.dtype == np.float32
    np.testing.assert_allclose(got, reference_frame(ev, t1, dt, bins), rtol=0, atol=1e-7)


def test_patches_match_reference_inside_and_at_borders(rng):
    ev = random_events(rng, 4000)
    t1, dt, size = 900_000, 600_000, 20
    centres = np.array([[48.4, 30.6], [0.2, 0.0], [96.5, 60.0], [-8.0, 70.0], [200.0, 30.0],
                        [10.5, 11.5], [48.4, 30.6]])
    got = sbt_max_patches(ev, t1, dt, centres, size=size)
    assert got.shape == (len(centres), 10, size, size) and got.dtype == np.float32
    for i, c in enumerate(centres):
        np.testing.assert_allclose(got[i], reference_patch(ev, t1, dt, 5, c, size), atol=1e-7)
    assert not got[4].any()  # entirely outside the sensor
    np.testing.assert_array_equal(got[0], got[6])


def test_patches_equal_frame_crops_for_many_tracks(rng):
    ev = random_events(rng, 20000, width=640, height=480)
    centres = np.c_[rng.uniform(-40, 680, 64), rng.uniform(-40, 520, 64)]
    frame = sbt_max_frame(ev, 700_000, 300_000)
    patches = sbt_max_patches(ev, 700_000, 300_000, centres, size=62)
    m = 100  # margin: every patch lies inside the padded frame
    pad = np.zeros((10, 480 + 2 * m, 640 + 2 * m), np.float32)
    pad[:, m:-m, m:-m] = frame
    for i, (cx, cy) in enumerate(np.round(centres).astype(int)):
        crop = pad[:, cy + m - 31:cy + m + 31, cx + m - 31:cx + m + 31]
        np.testing.assert_array_equal(patches[i], crop)


def test_defining_properties(rng):
    t1, dt = 1_000_000, 500_000
    # one event per bin end, one at t1 (last bin, value 1), one at t0 (outside), one after t1
    ts = [500_000, 500_001, 600_000, 700_000, 1_000_000, 1_000_001]
    ev = EventBatch(np.full(6, 5, np.uint16), np.full(6, 7, np.uint16), np.array(ts, np.int64),
                    np.array([1, 0, 1, 0, 1, 1], np.uint8), 16, 16)
    f = sbt_max_frame(ev, t1, dt)
    assert np.count_nonzero(f) == 4
    assert f[2 * 0 + 0, 7, 5] == np.float32(1 / 500_000)  # t0 + 1: first bin, OFF
    assert f[2 * 0 + 1, 7, 5] == np.float32(0.2)  # exactly at the first bin's end: bin 0
    assert f[2 * 1 + 0, 7, 5] == np.float32(0.4)
    assert f[2 * 4 + 1, 7, 5] == 1.0  # t1 belongs to the window, last bin
    assert (f >= 0).all() and (f <= 1).all()
    # the latest event of a (bin, polarity, pixel) wins; an empty window is all zero
    late = EventBatch(ev.x[:3], ev.y[:3], np.array([900_000, 950_000, 990_000], np.int64),
                      np.ones(3, np.uint8), 16, 16)
    assert sbt_max_frame(late, t1, dt)[9, 7, 5] == np.float32(0.98)
    assert not sbt_max_frame(ev, 10_000, 5_000).any()
    # the patch centre convention: centre pixel at [size // 2, size // 2]
    p = sbt_max_patches(ev, t1, dt, np.array([[5.4, 6.6]]), size=8)
    assert p[0, 9, 4, 4] == 1.0 and np.count_nonzero(p) == 4


def test_inputs_not_modified(rng):
    ev = random_events(rng, 2000)
    copies = {k: getattr(ev, k).copy() for k in ("x", "y", "t", "p")}
    centres = np.array([[10.3, 20.7], [50.0, 30.0]])
    c_copy = centres.copy()
    sbt_max_frame(ev, 900_000, 400_000)
    sbt_max_patches(ev, 900_000, 400_000, centres)
    for k, v in copies.items():
        np.testing.assert_array_equal(getattr(ev, k), v)
    np.testing.assert_array_equal(centres, c_copy)
    assert sbt_max_patches(ev, 900_000, 400_000, np.zeros((0, 2))).shape == (0, 10, 62, 62)


def test_reused_out_buffer(rng):
    ev = random_events(rng, 3000)
    centres = np.array([[10.0, 10.0], [50.2, 40.7], [90.0, 5.0]])
    expect = sbt_max_patches(ev, 900_000, 400_000, centres, size=30)
    buf = np.full(3 * 10 * 30 * 30 + 1, 7.0, np.float32)  # stale content must not leak
    got = sbt_max_patches(ev, 900_000, 400_000, centres, size=30, out=buf)
    np.testing.assert_array_equal(got, expect)
    assert np.shares_memory(got, buf)
    with pytest.raises(ValueError, match="out must be"):
        sbt_max_patches(ev, 900_000, 400_000, centres, size=30, out=buf[:-1])


@pytest.mark.parametrize("seed", range(4))
def test_compiled_patches_equal_numpy_code(seed):
    """The numba kernel (`events.sbt_jit`, the default where it compiles) against the numpy
    code: bit-equal patches for random windows, sizes, bins, patches across and beyond the
    border, and events outside the sensor (counted by decoders, ignored here)."""
    from blinktrack_ros.events import sbt_jit

    assert sbt_jit.available(), sbt_jit.error()  # installed by the project's own setup
    rng = np.random.default_rng(seed)
    width, height = (W, H) if seed % 2 else (640, 480)
    ev = random_events(rng, 30000, width=width + 5, height=height + 3)  # some outside
    ev = EventBatch(ev.x, ev.y, ev.t, ev.p, width, height)
    size, bins = (62, 5) if seed < 2 else (int(rng.integers(3, 40)), int(rng.integers(1, 7)))
    centres = np.c_[rng.uniform(-50, width + 50, 80), rng.uniform(-50, height + 50, 80)]
    t1, dt = int(rng.integers(300_000, 1_000_000)), int(rng.integers(1_000, 300_000))
    fast = sbt_max_patches(ev, t1, dt, centres, size=size, bins=bins)
    slow = sbt_max_patches(ev, t1, dt, centres, size=size, bins=bins, compiled=False)
    assert fast.any()
    np.testing.assert_array_equal(fast, slow)
