"""The per-role modules of the split (three-process) mode, from the core."""

from __future__ import annotations

from typing import Any


def build_modules(configs: dict[str, Any]) -> Any:
    """The core's modules for these configs: an object with `.event`, `.image`, `.fusion`
    (`blinktrack_ros.tracking.build.modules_from_configs`; the same classes the in-process
    Pipeline wires together).

    Raises:
        ValueError: weights missing (the message says how to fix it).
    """
    from blinktrack_ros.tracking.build import modules_from_configs

    try:
        return modules_from_configs(configs)
    except FileNotFoundError as exc:
        raise ValueError(str(exc)) from None
