"""The patch image network (`arch="patch"`): geometry of its crops and pyramid, equivariance,
the image module's contract (ImageSource, checkpoints), and configuration checks."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch

from blinktrack_ros.models.checkpoint import CheckpointError
from blinktrack_ros.models.image_config import LITE, PATCH, ImageNetConfig, config_by_name
from blinktrack_ros.models.image_net import ImageNet, load_image_net, save_image_net
from blinktrack_ros.models.image_patch import (
    PatchImageNet,
    crop,
    level_coords,
    standardise,
    template_correlation,
)
from blinktrack_ros.tracking.image_source import ImageSource

SMALL = replace(PATCH, feature_dim=8, redir_dim=4, patch_channels=(8, 8), mlp_dim=16,
                patch_size=13)


def _net(config: ImageNetConfig = SMALL, seed: int = 0) -> ImageNet:
    torch.manual_seed(seed)
    return ImageNet(config).eval()


def test_config_dispatch_and_checks():
    assert isinstance(_net(), PatchImageNet)
    assert not isinstance(ImageNet(LITE), PatchImageNet)
    assert config_by_name("patch") == PATCH
    with pytest.raises(ValueError, match="4k"):
        replace(PATCH, patch_size=24)
    with pytest.raises(ValueError, match="4k"):
        replace(PATCH, patch_size=23)  # odd, but no centre cell on the stride-2 map
    with pytest.raises(ValueError, match="iterations"):
        replace(PATCH, patch_levels=(1, 0, 0))
    with pytest.raises(ValueError, match="arch"):
        replace(PATCH, arch="vit")


def test_crop_at_integer_centres_is_the_slice_and_bilinear_between(rng):
    image = torch.from_numpy(rng.random((40, 50)).astype(np.float32))
    centres = torch.tensor([[20.0, 15.0], [7.0, 30.0]])
    out = crop(image[None], centres, 5)
    for k, (x, y) in enumerate(centres.int().tolist()):
        torch.testing.assert_close(out[k, 0], image[y - 2:y + 3, x - 2:x + 3])
    half = crop(image[None], torch.tensor([[20.5, 15.0]]), 5)[0, 0]
    torch.testing.assert_close(half, 0.5 * (image[13:18, 18:23] + image[13:18, 19:24]))


def test_level_coordinates_match_the_pooled_pyramid():
    # a linear ramp: every level's bilinear sample at level_coords(p) equals the ramp at p
    h, w = 64, 96
    yy, xx = torch.meshgrid(torch.arange(h, dtype=torch.float32),
                            torch.arange(w, dtype=torch.float32), indexing="ij")
    net = _net(replace(SMALL, patch_levels=(2, 1, 0), iterations=3))
    frame = net.encode_frame((0.3 * xx + 0.7 * yy) / 120.0)
    assert [tuple(p.shape) for p in frame.pyramid] == [(1, 64, 96), (1, 32, 48), (1, 16, 24)]
    p = torch.tensor([[40.25, 20.5], [50.0, 33.75]])
    for level in range(3):
        c = crop(frame.pyramid[level], level_coords(p, level), 1)[:, 0, 0, 0]
        torch.testing.assert_close(c, (0.3 * p[:, 0] + 0.7 * p[:, 1]) / 120.0)


def test_standardise_removes_brightness_and_contrast(rng):
    p = torch.from_numpy(rng.random((3, 1, 9, 9)).astype(np.float32))
    torch.testing.assert_close(standardise(p + 0.3), standardise(p), atol=1e-5, rtol=0)
    # a contrast gain changes only the deviation floor's share: std 0.14 against 0.01
    ratio = standardise(0.5 * p) / standardise(p)
    assert float(ratio.min()) > 0.9 and float(ratio.max()) < 1.0
    s = standardise(p)
    torch.testing.assert_close(s.mean(dim=(2, 3)), torch.zeros(3, 1), atol=1e-5, rtol=0)


def test_tracking_is_translation_equivariant(rng):
    """Shift the frame by an integer and the start by the same: the same displacement."""
    net = _net()
    big = rng.random((90, 120)).astype(np.float32)
    birth, now = big[10:80, 10:110], big[13:83, 5:105]  # content moves by (+5, -3) px
    seeds = torch.tensor([[30.0, 25.0], [60.5, 40.25]])
    ref = net.sample_reference(net.encode_frame(birth), seeds)
    start = seeds + torch.tensor([4.0, -2.0])
    with torch.inference_mode():
        pos, logits = net.track(net.encode_frame(now), ref, start)
        # the same scene seen 2 px further right and down: all positions move with it
        shifted_birth, shifted_now = big[12:82, 12:112], big[15:85, 7:107]
        ref2 = net.sample_reference(net.encode_frame(shifted_birth), seeds - 2.0)
        pos2, logits2 = net.track(net.encode_frame(shifted_now), ref2, start - 2.0)
    torch.testing.assert_close(pos2, pos - 2.0, atol=1e-4, rtol=0)
    torch.testing.assert_close(logits2, logits, atol=1e-4, rtol=0)


def test_image_source_runs_the_patch_network(rng):
    net = _net()
    source = ImageSource(net)
    assert source.references.feats.shape == (0, net.reference_dim)
    birth = rng.random((60, 80)).astype(np.float32)
    source.add_tracks([3, 5], birth, np.array([[10.0, 20.0], [70.0, 50.0]]))
    obs = source.observe(7, source.encode(birth), [5, 3], np.array([[70.0, 50.0], [np.nan, 1]]))
    np.testing.assert_array_equal(obs.ids, [5])
    assert source.drops.nonfinite_input == 1
    assert np.isfinite(obs.positions_px).all() and obs.covariances.shape == (1, 2, 2)


def test_checkpoint_round_trip_and_config_mismatch(tmp_path, rng):
    net = _net(seed=3)
    path = tmp_path / "patch.pt"
    save_image_net(path, net)
    loaded = load_image_net(path)
    assert isinstance(loaded, PatchImageNet) and loaded.config == SMALL
    frame = rng.random((50, 60)).astype(np.float32)
    seeds = torch.tensor([[20.0, 20.0]])
    with torch.inference_mode():
        a = net.track(net.encode_frame(frame), net.sample_reference(net.encode_frame(frame),
                                                                     seeds), seeds + 1)
        b = loaded.track(loaded.encode_frame(frame),
                         loaded.sample_reference(loaded.encode_frame(frame), seeds), seeds + 1)
    torch.testing.assert_close(a, b)
    with pytest.raises(CheckpointError):
        load_image_net(path, expected_config=PATCH)
    with pytest.raises(ValueError, match="ref_feats"):
        net.track(net.encode_frame(frame), torch.zeros(1, 5), seeds)


def test_unit_channels_is_the_l2_normalisation(rng):
    from torch.nn import functional as F

    from blinktrack_ros.models.image_patch import unit_channels

    x = torch.from_numpy(rng.normal(size=(4, 6, 5, 5)).astype(np.float32))
    x[0, :, 0, 0] = 0.0  # a zero vector stays zero (no NaN)
    torch.testing.assert_close(unit_channels(x), F.normalize(x, dim=1))


@pytest.mark.parametrize("n", [1, 7])
def test_template_correlation_is_the_grouped_convolution(rng, n):
    """The per-track template correlation equals the grouped convolution that defines it
    (zero padding, cross-correlation), also with channels-last maps, and has its gradient."""
    g = torch.Generator().manual_seed(int(rng.integers(1 << 30)))
    feat = torch.randn(n, 5, 9, 11, generator=g, requires_grad=True)
    template = torch.randn(n, 5, 3, 3, generator=g)
    want = torch.nn.functional.conv2d(feat.reshape(1, n * 5, 9, 11), template, padding=1,
                                      groups=n).reshape(n, 1, 9, 11)
    got = template_correlation(feat, template)
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)
    cl = template_correlation(feat.contiguous(memory_format=torch.channels_last), template)
    torch.testing.assert_close(cl, want, rtol=1e-5, atol=1e-5)
    (grad,) = torch.autograd.grad(got.square().sum(), feat)
    (grad_want,) = torch.autograd.grad(want.square().sum(), feat)
    torch.testing.assert_close(grad, grad_want, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("n", [1, 7, 40])
def test_traced_steps_equal_the_eager_network(rng, n):
    """In inference the steps run as frozen traces (one per level and image size, the track
    count dynamic): the same positions and logits as the eager network, for any N; with
    gradients (training) the eager network runs and the traces are not touched."""
    net = _net()
    frame = net.encode_frame(rng.random((50, 70)).astype(np.float32))
    points = torch.as_tensor(rng.uniform([3, 3], [66, 46], (n, 2)), dtype=torch.float32)
    ref = net.sample_reference(frame, points)
    start = points + torch.as_tensor(rng.normal(0, 1.5, (n, 2)), dtype=torch.float32)
    with torch.inference_mode():
        eager = net.track_iterations(frame, ref, start)
        net.use_traced_steps()
        traced = net.track_iterations(frame, ref, start)
    assert sorted(k[0] for k in net._traced) == sorted(net.levels)
    assert all(callable(fn) for fn in net._traced.values())  # traced, not the eager fallback
    for (p1, l1), (p2, l2) in zip(eager, traced):
        torch.testing.assert_close(p2, p1, atol=1e-4, rtol=1e-5)
        torch.testing.assert_close(l2, l1, atol=1e-4, rtol=1e-5)
    pos, _ = net.track(frame, ref, start)  # gradients on: eager, differentiable
    assert pos.requires_grad
    net.use_traced_steps(False)
    assert net._traced is None


def test_image_source_traces_the_patch_steps(rng):
    source = ImageSource(_net())
    frame = rng.random((60, 80)).astype(np.float32)
    source.add_tracks([1, 2], frame, np.array([[20.0, 20.0], [50.0, 30.0]]))
    source.observe(1, source.encode(frame), [1, 2], np.array([[21.0, 19.0], [50.5, 31.0]]))
    assert source.model._traced and all(callable(fn) for fn in source.model._traced.values())
