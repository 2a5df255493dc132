"""Measurement noise carried by a weights file (`train.calibrate --write`): stored, checked,
and used by the pipeline, the split modules and the fusion node's reader unless switched off."""

from __future__ import annotations

from dataclasses import replace

import pytest
from test_image_patch import SMALL as SMALL_PATCH
import torch

from blinktrack_ros.models.checkpoint import CheckpointError, set_fusion_noise
from blinktrack_ros.models.event_config import EventNetConfig
from blinktrack_ros.models.event_net import EventNet, load_event_net, save_event_net
from blinktrack_ros.models.image_net import ImageNet, load_image_net, save_image_net
from blinktrack_ros.tracking.build import build_pipeline, weights_noise_fits
from blinktrack_ros.tracking.engine import FusionConfig
from blinktrack_ros.tracking.pipeline import Mode, PipelineConfig


@pytest.fixture()
def weights(tmp_path):
    torch.manual_seed(0)
    image, event = tmp_path / "image.pt", tmp_path / "event.pt"
    save_image_net(image, ImageNet(SMALL_PATCH))
    save_event_net(event, EventNet(EventNetConfig.lite()))
    return event, image


def test_fit_is_stored_loaded_and_checked(weights):
    event, image = weights
    assert load_image_net(image).fusion_noise is None
    set_fusion_noise(image, -1.5, 3.25, note="test")
    assert load_image_net(image).fusion_noise == (-1.5, 3.25)
    assert load_event_net(event).fusion_noise is None
    assert weights_noise_fits(event, image) == {"event": None, "image": (-1.5, 3.25)}
    with pytest.raises(CheckpointError, match="slope"):
        set_fusion_noise(image, 0.0, float("nan"))
    with pytest.raises(CheckpointError, match="log_r0"):
        set_fusion_noise(event, 50.0, 1.0)
    assert load_image_net(image).fusion_noise == (-1.5, 3.25)  # a refused write changes nothing


def test_pipeline_uses_the_fit_unless_switched_off(weights):
    event, image = weights
    set_fusion_noise(image, -1.5, 3.25)
    set_fusion_noise(event, 0.75, 0.0)
    base = FusionConfig()
    for mode, expect_event, expect_image in (("i", False, True), ("ei", True, True),
                                             ("e", True, False)):
        p = build_pipeline(PipelineConfig(mode=Mode(mode)), base, event_weights=event,
                           image_weights=image)
        cfg = p.engine.config
        assert (cfg.image_noise_log_r0, cfg.image_noise_slope) == (
            (-1.5, 3.25) if expect_image else (base.image_noise_log_r0, base.image_noise_slope))
        assert (cfg.event_noise_log_r0, cfg.event_noise_slope) == (
            (0.75, 0.0) if expect_event else (base.event_noise_log_r0, base.event_noise_slope))
    off = build_pipeline(PipelineConfig(mode=Mode("ei")), replace(base, noise_from_weights=False),
                         event_weights=event, image_weights=image).engine.config
    assert (off.image_noise_log_r0, off.event_noise_log_r0) == (base.image_noise_log_r0,
                                                                base.event_noise_log_r0)


def test_missing_given_weights_is_an_error(tmp_path):
    with pytest.raises(FileNotFoundError):
        weights_noise_fits(tmp_path / "nope.pt", None)
