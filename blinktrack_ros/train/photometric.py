"""Photometric augmentation of training frames (sim-to-real): the renderer's frames are clean,
linear and unvignetted; real cameras apply a response curve, vignetting, blur, noise and lossy
compression. One random camera per snippet (gamma, gain, vignetting, blur, JPEG quality),
fresh sensor noise per frame.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np


@dataclass(frozen=True)
class Photometric:
    """Ranges of the photometric augmentation (each effect applied with probability p)."""

    p: float = 0.8
    gamma: tuple[float, float] = (0.6, 1.7)
    gain: tuple[float, float] = (0.6, 1.3)
    offset: tuple[float, float] = (-0.08, 0.08)
    vignetting: tuple[float, float] = (0.0, 0.5)  # brightness loss at the corners
    blur_sigma: tuple[float, float] = (0.0, 1.2)
    noise_sigma: tuple[float, float] = (0.0, 0.03)
    jpeg_quality: tuple[int, int] = (30, 95)


def augment_frames(frames: np.ndarray, rng: np.random.Generator,
                   ranges: Photometric = Photometric()) -> np.ndarray:
    """(F, H, W) float32 frames in [0, 1] -> augmented copies, still in [0, 1].

    Geometry is unchanged (ground truth stays valid); the same camera applies to every frame.
    """
    if frames.ndim != 3:
        raise ValueError(f"expected (F, H, W) frames, got shape {frames.shape}")
    out = frames.astype(np.float32, copy=True)
    if out.size == 0 or rng.random() >= ranges.p:
        return out
    _, h, w = out.shape

    def draw(lo_hi: tuple[float, float]) -> float:
        return float(rng.uniform(*lo_hi))

    gamma, gain, offset = draw(ranges.gamma), draw(ranges.gain), draw(ranges.offset)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    r2 = ((xx - (w - 1) / 2) ** 2 + (yy - (h - 1) / 2) ** 2) / (((w - 1) / 2) ** 2
                                                                  + ((h - 1) / 2) ** 2)
    vig = 1.0 - draw(ranges.vignetting) * r2 if rng.random() < 0.5 else 1.0
    sigma = draw(ranges.blur_sigma) if rng.random() < 0.5 else 0.0
    noise = draw(ranges.noise_sigma)
    quality = int(rng.integers(ranges.jpeg_quality[0], ranges.jpeg_quality[1] + 1)) \
        if rng.random() < 0.4 else 0
    for i in range(out.shape[0]):
        f = np.clip(out[i], 0.0, 1.0) ** gamma * gain * vig + offset
        if sigma > 0.3:
            f = cv2.GaussianBlur(f, (0, 0), sigma)
        if noise > 0:
            f = f + rng.normal(0.0, noise, f.shape).astype(np.float32)
        f = np.clip(f, 0.0, 1.0)
        if quality:
            ok, buf = cv2.imencode(".jpg", (f * 255 + 0.5).astype(np.uint8),
                                   [cv2.IMWRITE_JPEG_QUALITY, quality])
            if ok:
                f = cv2.imdecode(buf, cv2.IMREAD_GRAYSCALE).astype(np.float32) / 255.0
        out[i] = f
    return out
