"""Image observation source: references once per track, one observation per track, drops."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from blinktrack_ros.models.image_config import ImageNetConfig
from blinktrack_ros.models.image_net import ImageNet
from blinktrack_ros.tracking.image_source import ImageSource, ImageSourceConfig
from blinktrack_ros.tracking.observation import Source

SMALL = ImageNetConfig(stem_dim=8, stage_dims=(8, 8, 12, 16), blocks_per_stage=1, fuse_dim=16,
                       feature_dim=16, embed_dim=8, mlp_dim=32, mlp_depth=2, mlp_expansion=2)


def _net(seed: int = 0) -> ImageNet:
    torch.manual_seed(seed)
    return ImageNet(SMALL).eval()


def _gray(rng: np.random.Generator, h: int = 100, w: int = 150) -> np.ndarray:
    return rng.random((h, w)).astype(np.float32)


class _Counting:
    """Wraps a bound method and counts its calls."""

    def __init__(self, fn):
        self.fn, self.calls = fn, 0

    def __call__(self, *args, **kwargs):
        self.calls += 1
        return self.fn(*args, **kwargs)


def test_references_are_sampled_once_and_frames_encoded_once(rng):
    net = _net()
    sample, encode = _Counting(net.sample_reference), _Counting(net.encode_frame)
    net.sample_reference, net.encode_frame = sample, encode
    source = ImageSource(net)
    source.add_tracks([4, 9], _gray(rng), np.array([[10.0, 20.0], [70.0, 50.0]]))
    assert (sample.calls, encode.calls) == (1, 1)
    stored = source.references.feats.clone()
    for t in range(3):
        frame = source.encode(_gray(rng))
        obs = source.observe(t, frame, [9, 4], np.array([[71.0, 50.0], [11.0, 21.0]]))
        assert obs.source == Source.IMAGE and obs.t_ns == t
        np.testing.assert_array_equal(obs.ids, [9, 4])
    assert (sample.calls, encode.calls) == (1, 4)
    assert torch.equal(source.references.feats, stored)


def test_observations_match_the_network_final_iteration(rng):
    net = _net(1)
    source = ImageSource(net)
    birth, now = _gray(rng), _gray(rng)
    seeds = np.array([[0.0, 0.0], [149.0, 99.0], [40.5, 60.25]])  # corners and inside
    source.add_tracks([1, 2, 3], birth, seeds)
    predicted = seeds + [[2.0, -1.0], [-3.0, 0.5], [0.0, 4.0]]
    obs = source.observe(1_000, now, [1, 2, 3], predicted)
    with torch.no_grad():
        ref = net.sample_reference(net.encode_frame(torch.from_numpy(birth)),
                                   torch.tensor(seeds, dtype=torch.float32))
        # searches start inside the frame (ImageSourceConfig.start_inside): [2, -1] -> [2, 0]
        start = np.clip(predicted, 0.0, [149.0, 99.0])
        pos, logits = net.track(net.encode_frame(torch.from_numpy(now)), ref,
                                torch.tensor(start, dtype=torch.float32),
                                torch.tensor(seeds, dtype=torch.float32))
    np.testing.assert_allclose(obs.positions_px, pos.numpy(), atol=1e-4)
    p_vis = torch.softmax(logits, dim=1)[:, 1].numpy()
    np.testing.assert_allclose(obs.visibility, p_vis, atol=1e-5)
    r = np.maximum(10.0 * (1 - p_vis) ** (np.log(10.0) / np.log(2.0)), 1e-3)  # b = 3.32
    np.testing.assert_allclose(obs.covariances[:, 0, 0], r, rtol=1e-4)
    np.testing.assert_allclose(obs.covariances[:, 1, 1], r, rtol=1e-4)
    np.testing.assert_array_equal(obs.covariances[:, 0, 1], 0.0)


def test_searches_start_inside_the_frame(rng):
    """A prediction outside the frame is searched from the nearest pixel (the same observation
    as a query there); with start_inside off, from the prediction itself."""
    birth, now = _gray(rng), _gray(rng)
    seeds = np.array([[3.0, 40.0], [140.0, 95.0], [60.0, 50.0]])
    outside = np.array([[-25.0, 41.0], [160.0, 130.0], [61.0, 51.0]])
    nearest = np.array([[0.0, 41.0], [149.0, 99.0], [61.0, 51.0]])
    obs = {}
    for name, inside, query in (("out", True, outside), ("nearest", True, nearest),
                                ("raw", False, outside)):
        source = ImageSource(_net(7), ImageSourceConfig(start_inside=inside))
        source.add_tracks([1, 2, 3], birth, seeds)
        obs[name] = source.observe(5, now, [1, 2, 3], query)
    np.testing.assert_allclose(obs["out"].positions_px, obs["nearest"].positions_px, atol=1e-6)
    np.testing.assert_allclose(obs["out"].visibility, obs["nearest"].visibility, atol=1e-7)
    # the inside track is untouched; the two outside ones are searched elsewhere without it
    np.testing.assert_allclose(obs["raw"].positions_px[2], obs["out"].positions_px[2], atol=1e-6)
    assert np.abs(obs["raw"].positions_px[:2] - obs["out"].positions_px[:2]).max() > 1.0


def test_covariance_is_one_at_visibility_one_half(rng):
    net = _net(2)
    with torch.no_grad():
        net.mlp.out.weight.zero_()
        net.mlp.out.bias.zero_()  # equal logits: p_vis = 0.5, no motion
    source = ImageSource(net, ImageSourceConfig(r_max=10.0, thre=0.5))
    source.add_tracks([7], _gray(rng), np.array([[30.0, 40.0]]))
    obs = source.observe(5, _gray(rng), [7], np.array([[33.0, 41.0]]))
    np.testing.assert_allclose(obs.positions_px, [[33.0, 41.0]], atol=1e-5)
    np.testing.assert_allclose(obs.visibility, [0.5], atol=1e-6)
    np.testing.assert_allclose(obs.covariances[0], np.eye(2), atol=1e-5)


def test_unknown_ids_nonfinite_inputs_and_outputs_are_dropped_and_counted(rng):
    net = _net(3)
    source = ImageSource(net)
    source.add_tracks([1, 2], _gray(rng), np.array([[10.0, 10.0], [50.0, 50.0]]))
    obs = source.observe(0, _gray(rng), [1, 2, 5], np.array([[10, 10], [np.nan, 1], [3, 3]]))
    np.testing.assert_array_equal(obs.ids, [1])
    assert (source.drops.unknown_id, source.drops.nonfinite_input) == (1, 1)
    with torch.no_grad():
        net.mlp.out.bias.fill_(float("nan"))
    obs = source.observe(1, _gray(rng), [1, 2], np.array([[10.0, 10.0], [50.0, 50.0]]))
    assert len(obs) == 0 and source.drops.nonfinite_output == 2


def test_zero_tracks_and_removal(rng):
    source = ImageSource(_net(4))
    obs = source.observe(3, _gray(rng), [], np.zeros((0, 2)))
    assert len(obs) == 0 and obs.positions_px.shape == (0, 2)
    source.add_tracks([], _gray(rng), np.zeros((0, 2)))
    source.add_tracks([1, 2, 3], _gray(rng), np.array([[5.0, 5], [6, 6], [7, 7]]))
    assert source.remove_tracks([2, 99]) == 1
    np.testing.assert_array_equal(source.track_ids, [1, 3])
    assert source.references.feats.shape == (2, SMALL.feature_dim)
    obs = source.observe(4, _gray(rng), [3, 2], np.array([[7.0, 7.0], [6.0, 6.0]]))
    np.testing.assert_array_equal(obs.ids, [3])


def test_bad_input_is_a_clear_error(rng):
    source = ImageSource(_net(5))
    source.add_tracks([1], _gray(rng), np.array([[5.0, 5.0]]))
    with pytest.raises(ValueError, match="already present"):
        source.add_tracks([1], _gray(rng), np.array([[6.0, 6.0]]))
    with pytest.raises(ValueError, match="unique"):
        source.observe(0, _gray(rng), [1, 1], np.zeros((2, 2)))
    with pytest.raises(ValueError, match="shape"):
        source.observe(0, _gray(rng), [1], np.zeros((2, 2)))
    with pytest.raises(ValueError, match="divide uint8"):
        source.encode((_gray(rng) * 255).astype(np.uint8))
    with pytest.raises(ValueError, match="NaN"):
        source.encode(np.full((20, 20), np.nan, np.float32))
    with pytest.raises(ValueError, match="finite"):
        source.add_tracks([2], _gray(rng), np.array([[np.inf, 0.0]]))


@pytest.mark.data
def test_real_frames_give_one_bounded_observation_per_track(shared_data):
    import cv2

    folder = shared_data / "hfr_truck" / "images"
    times_s = np.loadtxt(shared_data / "hfr_truck" / "timestamps.txt")
    frames = [cv2.imread(str(folder / f"image_{i:05d}.png"), cv2.IMREAD_GRAYSCALE)
              .astype(np.float32) / 255.0 for i in range(4)]
    assert frames[0].shape == (180, 240)
    corners = cv2.goodFeaturesToTrack(frames[0], 24, 0.01, 8)[:, 0].astype(np.float64)
    ids = np.arange(corners.shape[0], dtype=np.uint32)
    source = ImageSource(_net(6))
    source.add_tracks(ids, frames[0], corners)
    predicted = corners
    for i, gray in enumerate(frames[1:], start=1):
        obs = source.observe(int(times_s[i] * 1e9), gray, ids, predicted)
        np.testing.assert_array_equal(obs.ids, ids)
        assert np.isfinite(obs.positions_px).all()
        r = obs.covariances[:, 0, 0]
        assert ((r >= 1e-3 - 1e-9) & (r <= 10.0 + 1e-6)).all()
        assert ((obs.visibility >= 0) & (obs.visibility <= 1)).all()
        predicted = obs.positions_px
    assert source.drops.unknown_id == source.drops.nonfinite_output == 0
