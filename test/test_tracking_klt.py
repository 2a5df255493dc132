"""The KLT source: a known synthetic translation, lost points, and real slider_depth frames."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from blinktrack_ros.tracking.klt import KltConfig, KltSource, fb_to_covariance, fb_to_visibility
from blinktrack_ros.tracking.observation import Source
from blinktrack_ros.tracking.seeding import SeedConfig, detect_seeds


def _texture(rng: np.random.Generator, h: int = 200, w: int = 260) -> np.ndarray:
    tex = cv2.GaussianBlur(rng.random((h, w)).astype(np.float32), (0, 0), 2.0)
    return (tex - tex.min()) / (tex.max() - tex.min())


def _shift(image: np.ndarray, dx: float, dy: float) -> np.ndarray:
    """Content moved by (+dx, +dy) px (bilinear)."""
    m = np.float32([[1, 0, dx], [0, 1, dy]])
    return cv2.warpAffine(image, m, image.shape[::-1], flags=cv2.INTER_LINEAR,
                          borderMode=cv2.BORDER_REFLECT)


def test_recovers_a_known_translation(rng: np.random.Generator) -> None:
    tex = _texture(rng)
    first, second = tex[10:190, 10:250], _shift(tex, 2.3, -1.6)[10:190, 10:250]
    seeds = detect_seeds(first, np.zeros((0, 2)), SeedConfig(target_count=40, border_px=20))
    ids = np.arange(len(seeds), dtype=np.uint32)
    klt = KltSource()
    assert len(klt.observe(0, first, ids, seeds)) == 0  # no previous frame yet
    obs = klt.observe(33_000_000, second, ids, seeds)  # search starts at the old position
    assert obs.source is Source.KLT and obs.t_ns == 33_000_000
    np.testing.assert_array_equal(obs.ids, ids)
    # uint8 quantisation of the frames limits the accuracy to a few hundredths of a pixel
    np.testing.assert_allclose(obs.positions_px - seeds, np.tile([2.3, -1.6], (len(ids), 1)),
                               atol=0.05)
    assert obs.visibility.min() > 0.9
    assert np.all(obs.covariances[:, 0, 0] >= KltConfig().sigma_min_px ** 2)


def test_occluded_point_is_reported_lost_at_the_prediction(rng: np.random.Generator) -> None:
    first = _texture(rng)
    second = _shift(first, 1.0, 0.0)
    second[60:140, 60:140] = 0.5  # a flat occluder over the first point: nothing to track
    points = np.array([[100.0, 100.0], [200.0, 50.0]])
    predicted = points + [1.0, 0.0]
    klt = KltSource(KltConfig(fb_max_px=1.0))
    klt.observe(0, first, np.array([7, 9]), points)
    obs = klt.observe(10, second, np.array([7, 9]), predicted)
    assert obs.visibility[0] == 0.0 and obs.visibility[1] > 0.9
    np.testing.assert_array_equal(obs.positions_px[0], predicted[0])
    assert obs.covariances[0, 0, 0] == KltConfig().lost_variance_px2
    np.testing.assert_allclose(obs.positions_px[1], predicted[1], atol=0.05)


def test_fb_mapping_is_monotonic() -> None:
    fb = np.array([0.0, 0.5, 1.0, 2.0])
    cfg = KltConfig()
    var = fb_to_covariance(fb, cfg)[:, 0, 0]
    vis = fb_to_visibility(fb, cfg)
    assert var[0] == pytest.approx(cfg.sigma_min_px**2) and np.all(np.diff(var) > 0)
    assert vis[0] == 1.0 and np.all(np.diff(vis) < 0)
    assert vis[1] == pytest.approx(np.exp(-0.5))


def test_new_ids_need_one_frame_and_bad_input_raises(rng: np.random.Generator) -> None:
    klt = KltSource()
    tex = _texture(rng)
    klt.observe(0, tex, np.array([1]), np.array([[100.0, 100.0]]))
    obs = klt.observe(1, tex, np.array([1, 2]), np.array([[100.0, 100.0], [50.0, 50.0]]))
    assert obs.ids.tolist() == [1]
    with pytest.raises(ValueError, match="grayscale"):
        klt.observe(2, np.zeros((4, 4, 3), np.float32), np.array([1]), np.zeros((1, 2)))
    with pytest.raises(ValueError, match="predicted"):
        klt.observe(2, tex, np.array([1, 2]), np.zeros((1, 2)))


def _slider_frames(root: Path, count: int) -> tuple[list[int], list[np.ndarray]]:
    rows = (root / "images.txt").read_text().split("\n")[:count]
    stamps = [round(float(r.split()[0]) * 1e9) for r in rows]
    frames = [cv2.imread(str(root / r.split()[1]), cv2.IMREAD_GRAYSCALE) for r in rows]
    return stamps, [f.astype(np.float32) / 255.0 for f in frames]


@pytest.mark.data
def test_slider_depth_flow_agrees_with_the_camera_motion(shared_data: Path) -> None:
    root = shared_data / "ec_slider_depth"
    stamps, frames = _slider_frames(root, 6)
    # ground-truth poses: the camera slides along +x without rotating, so static scene points
    # move towards -x in the image and not vertically
    poses = np.loadtxt(root / "groundtruth.txt", max_rows=200)
    assert np.all(np.diff(poses[:, 1]) >= 0) and np.all(poses[:, 2:] == poses[0, 2:])
    seeds = detect_seeds(frames[0], np.zeros((0, 2)), SeedConfig(target_count=60))
    ids = np.arange(len(seeds), dtype=np.uint32)
    klt, positions = KltSource(), seeds.copy()
    tracked = np.ones(len(ids), dtype=bool)
    for t_ns, frame in zip(stamps, frames):
        obs = klt.observe(t_ns, frame, ids, positions)
        if len(obs):
            seen = obs.visibility > 0
            tracked &= seen
            flow = obs.positions_px[seen] - positions[seen]
            assert np.median(flow[:, 0]) < -1.0
            assert abs(np.median(flow[:, 1])) < 0.2 * abs(np.median(flow[:, 0]))
            positions = np.where(seen[:, None], obs.positions_px, positions)
    assert tracked.mean() > 0.7
    # forward-backward over the whole clip: tracking back to frame 0 returns to the seeds
    back = KltSource()
    for t_ns, frame in zip(stamps[::-1], frames[::-1]):
        obs = back.observe(t_ns, frame, ids[tracked], positions[tracked])
        if len(obs):
            positions[tracked] = obs.positions_px
    errors = np.linalg.norm(positions[tracked] - seeds[tracked], axis=1)
    assert np.median(errors) < 0.3


def test_frames_without_tracks_then_with_tracks(rng: np.random.Generator) -> None:
    klt, tex = KltSource(), _texture(rng)
    assert len(klt.observe(0, tex, np.zeros(0, np.uint32), np.zeros((0, 2)))) == 0
    assert len(klt.observe(1, tex, np.array([4]), np.array([[90.0, 90.0]]))) == 0
    assert klt.observe(2, tex, np.array([4]), np.array([[90.0, 90.0]])).ids.tolist() == [4]
    klt.reset()
    assert len(klt.observe(3, tex, np.array([4]), np.array([[90.0, 90.0]]))) == 0
