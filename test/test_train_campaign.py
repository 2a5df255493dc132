"""Timed training (wall-time schedule, resume with optimiser/schedule/time state), photometric
augmentation, partial initialisation, mixed-precision selection, device-bench options."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch

from blinktrack_ros.bench.device import parse_modes
from blinktrack_ros.models.image_config import LITE, LITE2
from blinktrack_ros.models.image_net import ImageNet, save_image_net
from blinktrack_ros.train.data import DataSpec
from blinktrack_ros.train.photometric import Photometric, augment_frames
from blinktrack_ros.train.trainer import (
    TrainConfig,
    Trainer,
    amp_dtype,
    load_partial,
    schedule_factor,
)

SPEC = DataSpec("clean", width=96, height=72, duration_s=0.2, seeds=(6,))
NOTHING = Photometric(p=1.0, gamma=(1.0, 1.0), gain=(1.0, 1.0), offset=(0.0, 0.0),
                      vignetting=(0.0, 0.0), blur_sigma=(0.0, 0.0), noise_sigma=(0.0, 0.0),
                      jpeg_quality=(100, 100))


def test_photometric_keeps_shape_range_and_is_a_gamma_curve_when_told():
    rng = np.random.default_rng(0)
    frames = rng.random((3, 20, 30), dtype=np.float32)
    out = augment_frames(frames, np.random.default_rng(1))
    assert out.shape == frames.shape and out.dtype == np.float32
    assert out.min() >= 0.0 and out.max() <= 1.0 and not np.shares_memory(out, frames)
    # gamma alone (every other effect off, JPEG skipped by its own coin or at quality 100)
    gamma_only = replace(NOTHING, gamma=(2.0, 2.0))
    for seed in range(6):
        got = augment_frames(frames, np.random.default_rng(seed), gamma_only)
        assert np.abs(got - frames ** 2).max() < 1.5 / 255  # JPEG q100 rounds to 8 bits
    # deterministic given the generator; p = 0 changes nothing
    np.testing.assert_array_equal(augment_frames(frames, np.random.default_rng(3)),
                                  augment_frames(frames, np.random.default_rng(3)))
    np.testing.assert_array_equal(
        augment_frames(frames, np.random.default_rng(3), replace(NOTHING, p=0.0)), frames)
    with pytest.raises(ValueError, match="frames"):
        augment_frames(frames[0], rng)


def test_schedule_shape():
    assert schedule_factor(0.0) == pytest.approx(0.04)
    assert schedule_factor(0.1) == pytest.approx(1.0)
    assert schedule_factor(1.0) == pytest.approx(4e-4)
    tail = [schedule_factor(p) for p in np.linspace(0.1, 1.0, 20)]
    assert all(a >= b for a, b in zip(tail, tail[1:]))
    assert schedule_factor(2.0) == schedule_factor(1.0)


def test_amp_choice():
    cfg = TrainConfig()
    assert amp_dtype(cfg, "cpu") is None and amp_dtype(cfg, "cuda:0") is torch.bfloat16
    assert amp_dtype(replace(cfg, amp="fp16"), "cuda") is torch.float16
    with pytest.raises(ValueError, match="amp"):
        amp_dtype(replace(cfg, amp="fp8"), "cuda")
    assert parse_modes("bf16,fp16") == ["fp32", "bf16", "fp16"]
    with pytest.raises(ValueError, match="autocast"):
        parse_modes("int8")


def test_timed_run_follows_wall_time_and_resumes_with_its_state(tmp_path):
    cfg = TrainConfig(module="event", config="lite2", steps=10_000, snippets=1, tracks=4,
                      unroll=((0.0, 2),), val_every=0, ckpt_every=0, fresh_every=0,
                      minutes=0.05, lr=1e-3)
    tr = Trainer(cfg, SPEC, tmp_path / "run", tmp_path / "cache", progress=False)
    lr0 = tr.opt.param_groups[0]["lr"]
    assert lr0 == pytest.approx(1e-3 * schedule_factor(0.0))
    tr.run()
    assert 0 < tr.step < cfg.steps and tr.elapsed_s >= 60 * cfg.minutes
    assert tr.opt.param_groups[0]["lr"] == pytest.approx(1e-3 * schedule_factor(1.0),
                                                         rel=1e-6)
    assert (tmp_path / "run" / "best.pt").is_file()  # the final validation is the best so far
    again = Trainer(cfg, SPEC, tmp_path / "run2", tmp_path / "cache", progress=False)
    again.resume(tmp_path / "run" / "last.pt")
    assert again.step == tr.step and again.elapsed_s == pytest.approx(tr.elapsed_s)
    assert again.done_fraction() >= 1.0
    for (name, a), b in zip(tr.net.state_dict().items(), again.net.state_dict().values()):
        assert torch.equal(a, b), name
    assert again.opt.state_dict()["state"][0]["step"] == tr.step


def test_partial_init_copies_the_matching_encoder(tmp_path):
    torch.manual_seed(0)
    src = ImageNet(LITE)
    path = tmp_path / "lite.pt"
    save_image_net(path, src)
    dst = ImageNet(LITE2)
    copied, total = load_partial(dst, path)
    n_encoder = len(src.encoder.state_dict())
    assert copied >= n_encoder and copied < total  # the wider MLP is not copied
    for k, v in src.encoder.state_dict().items():
        assert torch.equal(dst.encoder.state_dict()[k], v), k


def test_partial_init_lite2_into_lite3_takes_the_lstm_centre_tap(tmp_path):
    """lite3 (16 px patches, 1x1 LSTM gate conv) starts from lite2: every tensor of the same
    shape is copied, the 3x3 LSTM kernel contributes its centre tap, the resized embedding
    (another input width) is left as initialised; and the lite3 network runs."""
    from blinktrack_ros.models.event_config import EventNetConfig
    from blinktrack_ros.models.event_net import EventNet, save_event_net

    torch.manual_seed(0)
    src = EventNet(EventNetConfig.lite2())
    path = tmp_path / "lite2.pt"
    save_event_net(path, src)
    dst = EventNet(EventNetConfig.lite3())
    init_embed = dst.embed.weight.detach().clone()
    copied, total = load_partial(dst, path)
    assert (copied, total) == (total - 1, len(dst.state_dict()))
    w_src, w_dst = src.lstm.gates.weight, dst.lstm.gates.weight
    assert w_src.shape[2:] == (3, 3) and w_dst.shape[2:] == (1, 1)
    assert torch.equal(w_dst, w_src[:, :, 1:2, 1:2])
    assert torch.equal(dst.embed.weight, init_embed)
    assert torch.equal(dst.tgt_encoder.stem.conv.weight, src.tgt_encoder.stem.conv.weight)
    s = dst.config.patch_size
    state = dst.init_state(torch.rand(3, 1, s, s))
    disp, logits, _ = dst(state, torch.rand(3, 10, s, s))
    assert disp.shape == (3, 2) and logits.shape == (3, 2) and torch.isfinite(disp).all()


def test_keep_weights_exports_every_checkpoint_as_loadable_weights(tmp_path):
    """--keep-weights: each checkpoint step leaves weights/step_N.pt that the tracker loads;
    the last one holds exactly the network the run ended with."""
    from blinktrack_ros.models.event_net import load_event_net

    cfg = TrainConfig(module="event", config="lite3", steps=4, snippets=1, tracks=4,
                      unroll=((0.0, 2),), val_every=0, ckpt_every=2, fresh_every=0, lr=1e-3)
    tr = Trainer(cfg, SPEC, tmp_path / "run", tmp_path / "cache", progress=False,
                 keep_weights=True)
    tr.run()
    kept = sorted(p.name for p in (tmp_path / "run" / "weights").iterdir())
    assert kept == ["step_0000002.pt", "step_0000004.pt"]
    net = load_event_net(tmp_path / "run" / "weights" / "step_0000004.pt")
    for (name, a), b in zip(tr.net.state_dict().items(), net.state_dict().values()):
        assert torch.equal(a, b), name
    first = load_event_net(tmp_path / "run" / "weights" / "step_0000002.pt")
    assert any(not torch.equal(a, b) for a, b in zip(first.state_dict().values(),
                                                     net.state_dict().values()))
