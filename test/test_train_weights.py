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


def test_default_event_source_is_lite_and_compact_lite2_loads_by_path():
    """The tracker's default event network stays the lite one (the compact lite2 lost on the
    clean validation preset, weights/README.md); lite2 is shipped and loads by path, each
    checkpoint with its own architecture."""
    from blinktrack_ros.tracking.build import DEFAULT_EVENT_WEIGHTS, make_event_source

    assert Path(DEFAULT_EVENT_WEIGHTS).name == "event_lite.pt"
    assert (WEIGHTS / "event_lite2.pt").stat().st_size <= MAX_BYTES
    default = make_event_source()
    assert default.net.config == EventNetConfig.lite()
    compact = make_event_source(WEIGHTS / "event_lite2.pt")
    assert compact.net.config == EventNetConfig.lite2()
