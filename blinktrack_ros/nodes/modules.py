"""Building the ROS-free modules the nodes wrap (the pipeline factory is the core's)."""

from __future__ import annotations

from typing import Any


def build_modules(configs: dict[str, Any], weights: str) -> Any:
    """The core's modules for these configs: an object with `.event` and `.image` attributes.

    Assumed interface (see nodes.base.EventModule / ImageModule):
    `blinktrack_ros.tracking.pipeline.build_modules(configs, weights)`, with `configs` the
    validated parameter sections (name -> config dataclass) and `weights` a checkpoint path or ""
    for the shipped lite weights.

    Raises:
        ValueError: the core's pipeline is not available (message says what is missing).
    """
    try:
        from blinktrack_ros.tracking import pipeline
    except ImportError as exc:
        raise ValueError(f"the core pipeline (blinktrack_ros.tracking.pipeline) is not "
                         f"available: {exc}") from None
    return pipeline.build_modules(configs, weights)
