"""Texture photographs for synthetic scenes: scikit-image's bundled images or a folder."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import cv2
import numpy as np

# Photographs bundled inside the scikit-image wheel (no download needed), checked with 0.26.
SKIMAGE_TEXTURES = (
    "astronaut", "brick", "camera", "chelsea", "clock", "coffee", "coins", "grass", "gravel",
    "hubble_deep_field", "immunohistochemistry", "moon", "page", "rocket", "cell", "text",
)
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".pgm", ".ppm")
# Textures are mapped into this intensity range so no region sits at the log floor.
INTENSITY_RANGE = (0.05, 0.95)


def _to_gray_float(image: np.ndarray) -> np.ndarray:
    """Any uint8/float/bool grey, RGB or RGBA image -> (H, W) float32 in INTENSITY_RANGE."""
    img = np.asarray(image)
    if img.ndim == 3:
        img = img[..., :3].astype(np.float64) @ np.array([0.299, 0.587, 0.114])
    img = img.astype(np.float64)
    if img.max() > 1.0:
        img = img / (65535.0 if img.max() > 255 else 255.0)
    lo, hi = INTENSITY_RANGE
    return (lo + (hi - lo) * np.clip(img, 0.0, 1.0)).astype(np.float32)


@lru_cache(maxsize=1)
def skimage_textures() -> tuple[np.ndarray, ...]:
    """The bundled scikit-image photographs as (H, W) float32 grey images (loaded once)."""
    import skimage.data

    out = []
    for name in SKIMAGE_TEXTURES:
        loader = getattr(skimage.data, name, None)
        if loader is None:
            continue
        try:
            out.append(_to_gray_float(loader()))
        except (OSError, ValueError, ModuleNotFoundError):  # a data file missing from the wheel
            continue
    if len(out) < 2:
        raise RuntimeError("scikit-image ships fewer than 2 usable images; use --textures DIR")
    return tuple(out)


def folder_textures(folder: Path) -> tuple[np.ndarray, ...]:
    """Every readable image in folder (sorted by name) as (H, W) float32 grey images.

    Raises:
        FileNotFoundError: folder missing; ValueError: fewer than 2 readable images.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"texture folder {folder} does not exist")
    out = []
    for path in sorted(folder.iterdir()):
        if path.suffix.lower() not in IMAGE_SUFFIXES:
            continue
        img = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
        if img is None or min(img.shape[:2]) < 16:
            continue
        if img.ndim == 3:  # OpenCV loads BGR(A)
            img = cv2.cvtColor(img[..., :3], cv2.COLOR_BGR2RGB)
        out.append(_to_gray_float(img))
    if len(out) < 2:
        raise ValueError(f"{folder}: need at least 2 readable images ("
                         f"{', '.join(IMAGE_SUFFIXES)})")
    return tuple(out)


def load_textures(folder: Path | None = None) -> tuple[np.ndarray, ...]:
    """Textures from folder, or scikit-image's bundled photographs when folder is None."""
    return skimage_textures() if folder is None else folder_textures(folder)
