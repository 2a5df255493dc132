"""The shipped lite weights load safely (weights_only) with the lite configurations."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from blinktrack_ros.models.event_config import EventNetConfig
from blinktrack_ros.models.event_net import load_event_net
from blinktrack_ros.models.image_config import LITE
from blinktrack_ros.models.image_net import load_image_net

WEIGHTS = Path(__file__).resolve().parent.parent / "weights"
MAX_BYTES = 10 * 1024 * 1024


def test_event_lite_weights_load_with_lite_config():
    path = WEIGHTS / "event_lite.pt"
    assert path.stat().st_size <= MAX_BYTES
    net = load_event_net(path, expected_config=EventNetConfig.lite())
    assert net.config == EventNetConfig.lite()
    assert all(torch.isfinite(p).all() for p in net.parameters())
    ref = torch.rand(3, 1, 20, 20, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        disp, logits, _ = net(net.init_state(ref), torch.zeros(3, 10, 20, 20))
    assert np.isfinite(disp.numpy()).all() and np.isfinite(logits.numpy()).all()


def test_image_lite_weights_load_with_lite_config():
    path = WEIGHTS / "image_lite.pt"
    assert path.stat().st_size <= MAX_BYTES
    net = load_image_net(path, expected_config=LITE)
    assert net.config == LITE
    assert all(torch.isfinite(p).all() for p in net.parameters())


def test_default_image_source_is_the_patch_network_with_its_noise():
    """The default image weights are the patch network (it won on every validation set,
    weights/README.md) and carry their own fitted R, which the pipeline uses; the pyramid
    `image_lite.pt` still loads by path."""
    from blinktrack_ros.tracking.build import DEFAULT_IMAGE_WEIGHTS, build_pipeline
    from blinktrack_ros.tracking.engine import FusionConfig
    from blinktrack_ros.tracking.pipeline import Mode, PipelineConfig

    assert Path(DEFAULT_IMAGE_WEIGHTS).name == "image_patch.pt"
    assert (WEIGHTS / "image_patch.pt").stat().st_size <= MAX_BYTES
    pipe = build_pipeline(PipelineConfig(mode=Mode.I))
    net = pipe.image.image_source.model
    assert net.config.arch == "patch" and net.fusion_noise is not None
    cfg = pipe.engine.config
    assert (cfg.image_noise_log_r0, cfg.image_noise_slope) == net.fusion_noise
    assert net.fusion_noise != (FusionConfig().image_noise_log_r0,
                                FusionConfig().image_noise_slope)
    old = build_pipeline(PipelineConfig(mode=Mode.I), image_weights=WEIGHTS / "image_lite.pt")
    assert old.image.image_source.model.config == LITE
    assert old.engine.config.image_noise_log_r0 == FusionConfig().image_noise_log_r0


def test_default_event_source_is_lite3_with_its_noise_and_older_nets_load_by_path():
    """The default event network is the compact lite3 (it beat lite on both validation sets at
    half the time, weights/README.md) and carries its own R, which the pipeline uses; the older
    lite and lite2 weights still load by path, each checkpoint with its own architecture."""
    from blinktrack_ros.tracking.build import (
        DEFAULT_EVENT_WEIGHTS,
        build_pipeline,
        make_event_source,
    )
    from blinktrack_ros.tracking.engine import FusionConfig
    from blinktrack_ros.tracking.pipeline import Mode, PipelineConfig

    assert Path(DEFAULT_EVENT_WEIGHTS).name == "event_lite3.pt"
    for name in ("event_lite3.pt", "event_lite2.pt"):
        assert (WEIGHTS / name).stat().st_size <= MAX_BYTES
    default = make_event_source()
    assert default.net.config == EventNetConfig.lite3()
    pipe = build_pipeline(PipelineConfig(mode=Mode.E))
    noise = pipe.event.source.fusion_noise
    assert noise is not None and noise != (FusionConfig().event_noise_log_r0,
                                           FusionConfig().event_noise_slope)
    cfg = pipe.engine.config
    assert (cfg.event_noise_log_r0, cfg.event_noise_slope) == noise
    assert make_event_source(WEIGHTS / "event_lite2.pt").net.config == EventNetConfig.lite2()
    assert make_event_source(WEIGHTS / "event_lite.pt").net.config == EventNetConfig.lite()


def test_patch_image_weights_track_a_known_shift_of_a_real_frame():
    """The shipped patch image network on a real DAVIS frame (EC slider_depth, never trained
    on) moved by a known sub-pixel translation, darker and with less contrast: the ground
    truth is the warp. Sub-pixel where KLT-like trackers are (median < 0.3 px)."""
    import cv2
    import pytest

    frame_path = (Path(__file__).resolve().parents[2] / "shared" / "data" / "ec_slider_depth"
                  / "images" / "frame_00000000.png")
    if not frame_path.is_file():
        pytest.skip(f"real frame not found: {frame_path} (see ../shared/data/SOURCES.md)")
    net = load_image_net(WEIGHTS / "image_patch.pt")
    assert net.config.arch == "patch" and net.fusion_noise is not None
    gray = cv2.imread(str(frame_path), cv2.IMREAD_GRAYSCALE).astype(np.float32) / 255.0
    h, w = gray.shape
    corners = cv2.goodFeaturesToTrack(gray, 40, 0.01, 8)[:, 0].astype(np.float32)
    corners = corners[(corners[:, 0] > 25) & (corners[:, 0] < w - 25)
                      & (corners[:, 1] > 25) & (corners[:, 1] < h - 25)]
    assert len(corners) >= 15
    shift = np.array([3.3, -1.7], np.float32)
    moved = cv2.warpAffine(gray, np.float32([[1, 0, shift[0]], [0, 1, shift[1]]]), (w, h),
                           flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    moved = 0.5 * moved + 0.1
    with torch.inference_mode():
        ref = net.sample_reference(net.encode_frame(gray), torch.from_numpy(corners))
        pos, logits = net.track(net.encode_frame(moved), ref, torch.from_numpy(corners))
    err = np.linalg.norm(pos.numpy() - (corners + shift), axis=1)
    assert np.median(err) < 0.3 and np.percentile(err, 90) < 1.0, np.round(err, 2)
    assert (logits[:, 1] > logits[:, 0]).float().mean() > 0.9  # seen as visible
