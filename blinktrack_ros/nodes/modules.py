"""The per-role modules of the split (three-process) mode, from the core."""

from __future__ import annotations

from typing import Any


def build_modules(configs: dict[str, Any]) -> Any:
    """The core's event and image modules for these configs: an object with `.event`, `.image`.

    Assumed interface (nodes.base.EventModule / ImageModule):
    `blinktrack_ros.tracking.pipeline.build_modules(configs)`, `configs` being the validated
    parameter sections (name -> config dataclass). The core's Pipeline runs every role in one
    object (blinktrack_node); until the core splits it by role this raises.

    Raises:
        ValueError: the core does not provide per-role modules (the message says what to use).
    """
    from blinktrack_ros.tracking import pipeline

    factory = getattr(pipeline, "build_modules", None)
    if factory is None:
        raise ValueError("the split mode (event_node, image_node) needs per-role modules that "
                         "blinktrack_ros.tracking.pipeline does not provide yet: run "
                         "blinktrack_node (launch argument single_process:=true)")
    return factory(configs)
