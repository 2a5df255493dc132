"""Assemble a Pipeline for a mode: load the shipped (or given) weights, create the sources."""

from __future__ import annotations

from pathlib import Path

from blinktrack_ros.resources import find_share_file
from blinktrack_ros.tracking.engine import FusionConfig
from blinktrack_ros.tracking.pipeline import Pipeline, PipelineConfig
from blinktrack_ros.tracking.seeding import SeedConfig

DEFAULT_EVENT_WEIGHTS = "weights/event_lite.pt"
DEFAULT_IMAGE_WEIGHTS = "weights/image_lite.pt"


def resolve_weights(path: str | Path | None, default: str) -> Path:
    """The given weights file, or the shipped default; FileNotFoundError says how to fix it."""
    if path:
        path = Path(path).expanduser()
        if not path.is_file():
            raise FileNotFoundError(f"weights file not found: {path}")
        return path
    try:
        return find_share_file(default)
    except FileNotFoundError as exc:
        raise FileNotFoundError(
            f"no shipped weights ({default}): pass a weights file, train your own with "
            "`blinktrack train`, or use mode 'klt'") from exc


def make_event_source(weights: str | Path | None = None, device: str = "cpu",
                      untrained: bool = False, seed: int = 0, **source_kwargs: object):
    """An EventSource with the lite (or the checkpoint's) network; untrained: random weights."""
    import torch

    from blinktrack_ros.models.event_config import EventNetConfig
    from blinktrack_ros.models.event_net import EventNet, load_event_net
    from blinktrack_ros.tracking.event_source import EventSource, EventSourceConfig

    if untrained:
        torch.manual_seed(seed)
        model = EventNet(EventNetConfig.lite()).eval()
    else:
        model = load_event_net(resolve_weights(weights, DEFAULT_EVENT_WEIGHTS), device)
    return EventSource(model, EventSourceConfig(device=device, **source_kwargs))


def make_image_source(weights: str | Path | None = None, device: str = "cpu",
                      untrained: bool = False, seed: int = 0, **source_kwargs: object):
    """An ImageSource with the lite (or the checkpoint's) network; untrained: random weights."""
    import torch

    from blinktrack_ros.models.image_config import LITE
    from blinktrack_ros.models.image_net import ImageNet, load_image_net
    from blinktrack_ros.tracking.image_source import ImageSource, ImageSourceConfig

    if untrained:
        torch.manual_seed(seed)
        model = ImageNet(LITE).eval()
    else:
        model = load_image_net(resolve_weights(weights, DEFAULT_IMAGE_WEIGHTS), device)
    return ImageSource(model.to(device), ImageSourceConfig(**source_kwargs))


def build_pipeline(config: PipelineConfig, fusion: FusionConfig | None = None,
                   seeding: SeedConfig | None = None, event_weights: str | Path | None = None,
                   image_weights: str | Path | None = None, device: str = "cpu",
                   untrained: bool = False, klt_config: object | None = None) -> Pipeline:
    """A Pipeline with exactly the sources `config.mode` needs."""
    from blinktrack_ros.tracking.klt import KltSource

    mode = config.mode
    event = make_event_source(event_weights, device, untrained) if mode.uses_events else None
    image = make_image_source(image_weights, device, untrained) if mode.uses_image_net \
        else None
    klt = KltSource(klt_config) if mode.uses_klt else None
    return Pipeline(config, fusion, seeding, event_source=event, image_source=image, klt=klt)
