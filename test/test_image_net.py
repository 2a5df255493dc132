"""Image network: sizes, sampling convention, correlation, padding, per-track independence."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from blinktrack_ros.models.image_config import LITE, PAPER, ImageNetConfig, config_by_name
from blinktrack_ros.models.image_layers import flow_embedding
from blinktrack_ros.models.image_net import (
    ImageNet,
    correlation,
    correlation_volumes,
    count_parameters,
    sample_map,
    sample_volumes,
)

SMALL = ImageNetConfig(stem_dim=8, stage_dims=(8, 8, 12, 16), blocks_per_stage=1, fuse_dim=16,
                       feature_dim=16, embed_dim=8, mlp_dim=32, mlp_depth=2, mlp_expansion=2)


@pytest.fixture(scope="module")
def net() -> ImageNet:
    torch.manual_seed(0)
    return ImageNet(SMALL).eval()


def _frame(rng: np.random.Generator, h: int, w: int) -> torch.Tensor:
    """A smooth random gray frame in [0, 1] (float32)."""
    coarse = rng.random((h // 8 + 2, w // 8 + 2))
    img = np.kron(coarse, np.ones((8, 8)))[:h, :w]
    return torch.from_numpy(img.astype(np.float32))


def test_paper_parameter_count_matches_the_paper():
    n = count_parameters(ImageNet(PAPER))
    assert abs(n - 28.1e6) / 28.1e6 < 0.02
    assert count_parameters(ImageNet(LITE)) < n / 20
    assert config_by_name("lite") is LITE
    with pytest.raises(ValueError, match="choose from"):
        config_by_name("huge")


def test_sampling_at_integer_coordinates_returns_map_values(rng):
    fmap = torch.from_numpy(rng.standard_normal((5, 7, 9)).astype(np.float32))
    u = rng.integers(0, 9, size=20)
    v = rng.integers(0, 7, size=20)
    points = torch.from_numpy(np.stack((u, v), -1).astype(np.float32))[:, None]  # N 1 2
    for padding in ("zeros", "border"):
        got = sample_map(fmap, points, padding)[:, 0]  # N C
        np.testing.assert_allclose(got.numpy(), fmap[:, v, u].T.numpy(), atol=1e-6)


def test_reference_features_at_pixel_multiples_of_8_are_map_cells(net, rng):
    cells = np.array([[0, 0], [3, 2], [11, 7], [5, 6]])
    with torch.no_grad():
        frame = net.encode_frame(_frame(rng, 64, 96))
        feats = net.sample_reference(frame, torch.from_numpy(cells * 8.0))
    expected = frame.feature_map[:, cells[:, 1], cells[:, 0]].T
    np.testing.assert_allclose(feats.numpy(), expected.numpy(), atol=1e-5)


def _bilinear_zero_padded(img: np.ndarray, x: float, y: float) -> float:
    """Reference bilinear interpolation of a 2-D array, zero outside, pixel centres at integers."""
    x0, y0 = math.floor(x), math.floor(y)
    total = 0.0
    for yy, wy in ((y0, 1 - (y - y0)), (y0 + 1, y - y0)):
        for xx, wx in ((x0, 1 - (x - x0)), (x0 + 1, x - x0)):
            if 0 <= yy < img.shape[0] and 0 <= xx < img.shape[1]:
                total += wx * wy * img[yy, xx]
    return total


def test_windowed_correlation_equals_sampling_the_full_volume(rng):
    C, radius = 6, 1
    pyramid = tuple(torch.from_numpy(rng.standard_normal((C, 12 >> lvl, 16 >> lvl))
                                     .astype(np.float32)) for lvl in range(3))
    ref = torch.from_numpy(rng.standard_normal((4, C)).astype(np.float32))
    coords = torch.tensor([[3.3, 4.7], [0.2, 0.1], [15.5, 11.9], [-0.6, 5.0]])
    got = correlation(pyramid, ref, coords, radius).numpy()
    assert got.shape == (4, 3 * 9)
    for n in range(4):
        col = 0
        for lvl, fmap in enumerate(pyramid):
            volume = np.einsum("c,chw->hw", ref[n].numpy(), fmap.numpy()) / math.sqrt(C)
            cx, cy = (coords[n] / 2**lvl).tolist()
            for dx in (-1, 0, 1):  # x-major window order, as the reference weights expect
                for dy in (-1, 0, 1):
                    want = _bilinear_zero_padded(volume, cx + dx, cy + dy)
                    assert got[n, col] == pytest.approx(want, abs=1e-4)
                    col += 1


def test_flow_embedding_layout():
    flow = torch.tensor([[0.3, -1.2], [2.0, 0.05]])
    emb = flow_embedding(flow, 8).numpy()
    assert emb.shape == (2, 18)
    for n in range(2):
        for axis in range(2):
            for k in range(4):
                f = 2 * k * 1000.0 / 8
                u = float(flow[n, axis])
                assert emb[n, axis * 8 + 2 * k] == pytest.approx(math.sin(f * u), abs=1e-3)
                assert emb[n, axis * 8 + 2 * k + 1] == pytest.approx(math.cos(f * u), abs=1e-3)
        np.testing.assert_allclose(emb[n, 16:], flow[n].numpy())


def test_padding_matches_an_explicitly_padded_frame(net, rng):
    img = _frame(rng, 133, 141)  # not multiples of 8, and above the 128 px minimum
    padded = torch.from_numpy(np.pad(img.numpy(), ((0, 3), (0, 3)), mode="edge"))  # 136 144
    starts = torch.tensor([[10.0, 12.0], [140.0, 132.0], [70.5, 66.25]])
    with torch.no_grad():
        a, b = net.encode_frame(img), net.encode_frame(padded)
        assert a.image_size == (133, 141) and a.padded_size == (136, 144)
        assert a.feature_map.shape[-2:] == (17, 18)
        np.testing.assert_allclose(a.feature_map.numpy(), b.feature_map.numpy(), atol=1e-5)
        ref = net.sample_reference(a, starts)
        pa, la = net.track(a, ref, starts + 2.0, starts)
        pb, lb = net.track(b, ref, starts + 2.0, starts)
    np.testing.assert_allclose(pa.numpy(), pb.numpy(), atol=1e-4)
    np.testing.assert_allclose(la.numpy(), lb.numpy(), atol=1e-4)


def test_small_frames_are_padded_to_the_pyramid_minimum(net, rng):
    with torch.no_grad():
        frame = net.encode_frame(_frame(rng, 20, 30))
    assert frame.padded_size == (SMALL.min_size_px, SMALL.min_size_px)
    assert min(frame.pyramid[-1].shape[-2:]) >= 2
    with pytest.raises(ValueError, match="gray frame"):
        net.encode_frame(torch.zeros(3, 20, 30))


def test_tracks_are_independent_of_each_other(rng):
    # float64: the high sin/cos frequencies of the flow embedding amplify float32 rounding
    # differences between batch sizes (different BLAS blocking) beyond a useful tolerance.
    torch.manual_seed(3)
    net = ImageNet(SMALL).double().eval()
    img = _frame(rng, 128, 160).double()
    starts = torch.from_numpy(rng.random((7, 2)) * 150)
    starts[0] = torch.tensor([0.0, 0.0])  # corner
    starts[1] = torch.tensor([-6.0, 131.0])  # outside the frame
    starts[2] = torch.tensor([159.0, 127.0])  # last pixel
    with torch.no_grad():
        frame = net.encode_frame(img)
        ref = net.sample_reference(frame, starts)
        pos_all, log_all = net.track(frame, ref, starts + 3.0, starts)
        perm = torch.randperm(7)
        pos_perm, _ = net.track(frame, ref[perm], starts[perm] + 3.0, starts[perm])
        for i in range(7):
            pos_i, log_i = net.track(frame, ref[i:i + 1], starts[i:i + 1] + 3.0, starts[i:i + 1])
            np.testing.assert_allclose(pos_i[0].numpy(), pos_all[i].numpy(), atol=1e-8)
            np.testing.assert_allclose(log_i[0].numpy(), log_all[i].numpy(), atol=1e-8)
    np.testing.assert_allclose(pos_perm.numpy(), pos_all[perm].numpy(), atol=1e-8)
    assert torch.isfinite(pos_all).all()


def test_zero_tracks(net, rng):
    with torch.no_grad():
        frame = net.encode_frame(_frame(rng, 64, 64))
        ref = net.sample_reference(frame, torch.zeros(0, 2))
        pos, logits = net.track(frame, ref, torch.zeros(0, 2))
    assert ref.shape == (0, SMALL.feature_dim) and pos.shape == (0, 2) and logits.shape == (0, 2)


def test_updates_are_in_eighth_pixels_once_per_iteration(rng):
    torch.manual_seed(1)
    net = ImageNet(SMALL).eval()
    with torch.no_grad():
        net.mlp.out.weight.zero_()
        net.mlp.out.bias.copy_(torch.tensor([1.0, -0.5, 0.0, 0.0]))
        frame = net.encode_frame(_frame(rng, 64, 96))
        starts = torch.tensor([[20.0, 30.0], [5.0, 60.0]])
        steps = net.track_iterations(frame, net.sample_reference(frame, starts), starts)
    assert len(steps) == SMALL.iterations
    for i, (pos, _) in enumerate(steps, start=1):
        np.testing.assert_allclose((pos - starts).numpy(), [[8.0 * i, -4.0 * i]] * 2, atol=1e-4)


def test_gradients_reach_encoder_and_mlp(rng):
    torch.manual_seed(2)
    net = ImageNet(SMALL)
    frame = net.encode_frame(_frame(rng, 64, 64))
    starts = torch.tensor([[20.0, 30.0]])
    pos, logits = net.track(frame, net.sample_reference(frame, starts), starts + 1.0, starts)
    (pos.sum() + logits.sum()).backward()
    assert net.encoder.stem.weight.grad.abs().sum() > 0
    assert net.mlp.inp.weight.grad.abs().sum() > 0


def test_correlation_from_volumes_equals_the_windowed_look_up(rng):
    """The per-frame volumes (used on small frames) give the windowed correlation, inside,
    at the border and outside the map."""
    C, radius = 6, 2
    pyramid = tuple(torch.from_numpy(rng.standard_normal((C, 12 >> lvl, 16 >> lvl))
                                     .astype(np.float32)) for lvl in range(3))
    ref = torch.from_numpy(rng.standard_normal((5, C)).astype(np.float32))
    coords = torch.tensor([[3.3, 4.7], [0.2, 0.1], [15.5, 11.9], [-0.6, 5.0], [20.0, -3.0]])
    want = correlation(pyramid, ref, coords, radius)
    got = sample_volumes(correlation_volumes(pyramid, ref), coords, radius)
    assert got.shape == want.shape == (5, 3 * 25)
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)
