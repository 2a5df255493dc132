"""Helpers for `blinktrack bench <what>`: timing with medians, a table or one JSON object."""

from __future__ import annotations

from collections.abc import Callable
import json
import platform
import time
from typing import Any

import numpy as np


def time_calls(fn: Callable[[], Any], repeats: int, warmup: int = 2) -> np.ndarray:
    """Call fn warmup + repeats times; return the repeats' wall times in seconds."""
    for _ in range(warmup):
        fn()
    times = np.empty(repeats)
    for i in range(repeats):
        t0 = time.perf_counter()
        fn()
        times[i] = time.perf_counter() - t0
    return times


def machine_info() -> dict[str, Any]:
    """What the figures were measured on."""
    import os

    info: dict[str, Any] = {"python": platform.python_version(), "cpus": os.cpu_count(),
                            "numpy": np.__version__}
    try:
        import torch

        info["torch"] = torch.__version__
        info["torch_threads"] = torch.get_num_threads()
    except ImportError:
        pass
    return info


def report(title: str, figures: dict[str, Any], as_json: bool) -> None:
    """Print figures as a readable table, or as one JSON object (keys carry the units)."""
    if as_json:
        print(json.dumps({"bench": title, **figures, "machine": machine_info()}, sort_keys=False))
        return
    width = max((len(k) for k in figures), default=10)
    print(f"# {title}")
    for key, value in figures.items():
        if isinstance(value, float):
            value = f"{value:.4g}"
        print(f"{key:<{width}}  {value}")
    print("# " + ", ".join(f"{k} {v}" for k, v in machine_info().items()))
