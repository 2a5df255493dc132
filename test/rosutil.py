"""Helpers shared by the ROS tests (processes on private domains, spinning until a condition,
the translating texture the node tests publish). Imports nothing from rclpy itself."""

from __future__ import annotations

import time

import numpy as np


def spin_until(executor, predicate, timeout_s: float) -> bool:
    """Spin `executor` until predicate() is true or timeout_s passes (no fixed sleeps)."""
    deadline = time.monotonic() + timeout_s
    while not predicate() and time.monotonic() < deadline:
        executor.spin_once(timeout_sec=0.05)
    return bool(predicate())


def texture(rng: np.random.Generator, width: int = 136, height: int = 112) -> np.ndarray:
    """A smooth random texture in [0, 255] (float32) with corners for Shi-Tomasi and KLT."""
    import cv2

    tex = cv2.GaussianBlur(rng.uniform(0, 255, (height, width)).astype(np.float32), (0, 0), 2.0)
    return (tex - tex.min()) / (tex.max() - tex.min()) * 255


def translated(tex: np.ndarray, shift_px: np.ndarray, size: tuple[int, int] = (96, 72),
               origin: float = -20.0) -> np.ndarray:
    """uint8 frame of `size` (w, h) showing `tex` moved by shift_px (x, y) from `origin`."""
    import cv2

    m = np.float32([[1, 0, origin + shift_px[0]], [0, 1, origin + shift_px[1]]])
    return cv2.warpAffine(tex, m, size).astype(np.uint8)
