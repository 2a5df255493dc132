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


# ---------------------------------------------------------------------------------------------
# Texture pools for training and the challenge test set.
#
# Photographs: scikit-image's bundled images plus the wallpapers of Debian/Ubuntu desktop
# packages when installed (`bash tools/setup.sh --textures` installs mate-backgrounds,
# ukui-wallpapers and lomiri-wallpapers-20.04: about 45 photographs and artworks). Every
# photograph is assigned by a hash of its name to the "train" split (4/5) or the "test" split
# (1/5, used only by `blinktrack synth --suite challenge`). The example images of Debian's
# opencv-doc package are reserved for independent evaluation and are never read here.
# Procedural textures (dead leaves with power-law sizes, 1/f noise, stripes) add an unlimited
# number of distinct textures; train and test draw them from different seed streams.
# ---------------------------------------------------------------------------------------------

SYSTEM_TEXTURE_DIRS = ("/usr/share/backgrounds", "/usr/share/wallpapers")
RESERVED_MARKERS = ("opencv",)  # never read (independent evaluation images)
MAX_PHOTO_SIDE = 640
SPLITS = ("train", "test")


def texture_split(name: str) -> str:
    """'test' for about 1 in 5 photographs (stable hash of the name), else 'train'."""
    import re
    import zlib

    # one photograph shipped at several sizes (`Elephants_3840x2160.jpg`) stays in one split
    key = re.sub(r"_\d+x\d+$", "", Path(name).stem.lower())
    return "test" if zlib.crc32(key.encode()) % 5 == 0 else "train"


def system_texture_paths(dirs: tuple[str, ...] = SYSTEM_TEXTURE_DIRS) -> list[Path]:
    """Photographs under the desktop-background folders (sorted; reserved images excluded)."""
    out = []
    for d in dirs:
        root = Path(d)
        if not root.is_dir():
            continue
        for path in sorted(root.rglob("*")):
            low = str(path).lower()
            if path.suffix.lower() in IMAGE_SUFFIXES and path.is_file() and not any(
                    m in low for m in RESERVED_MARKERS):
                out.append(path)
    return out


@lru_cache(maxsize=256)
def _load_photo(path: str) -> np.ndarray | None:
    """A photograph as uint8 grey, longer side <= MAX_PHOTO_SIDE (None if unreadable)."""
    img = cv2.imread(path, cv2.IMREAD_GRAYSCALE)
    if img is None or min(img.shape) < 32:
        return None
    f = MAX_PHOTO_SIDE / max(img.shape)
    if f < 1:
        img = cv2.resize(img, None, fx=f, fy=f, interpolation=cv2.INTER_AREA)
    return img


@lru_cache(maxsize=2)
def photo_names(split: str) -> tuple[str, ...]:
    """Names of the photographs of a split: 'skimage:<name>' and system file paths."""
    if split not in SPLITS:
        raise ValueError(f"unknown texture split {split!r}; choose from {SPLITS}")
    names = [f"skimage:{n}" for n in SKIMAGE_TEXTURES]
    names += [str(p) for p in system_texture_paths()]
    return tuple(n for n in names if texture_split(n.split(":")[-1]) == split)


def _photo(name: str) -> np.ndarray | None:
    if name.startswith("skimage:"):
        key = name.split(":", 1)[1]
        pool = dict(zip([n for n in SKIMAGE_TEXTURES], _skimage_by_name()))
        return pool.get(key)
    img = _load_photo(name)
    return None if img is None else _to_gray_float(img)


@lru_cache(maxsize=1)
def _skimage_by_name() -> tuple[np.ndarray | None, ...]:
    import skimage.data

    out = []
    for name in SKIMAGE_TEXTURES:
        try:
            out.append(_to_gray_float(getattr(skimage.data, name)()))
        except (AttributeError, OSError, ValueError, ModuleNotFoundError):
            out.append(None)
    return tuple(out)


def procedural_texture(rng: np.random.Generator, size: int = 384) -> np.ndarray:
    """(size, size) float32 texture in INTENSITY_RANGE: dead leaves, 1/f noise or stripes.

    Dead leaves (occluding discs, rectangles and polygons with power-law sizes) share the
    scale invariance and edge statistics of natural images; 1/f^beta noise adds fine texture.
    """
    kind = rng.choice(["leaves", "leaves", "noise", "stripes"])
    if kind == "noise":
        beta = rng.uniform(1.5, 2.5)
        f = np.sqrt(np.fft.fftfreq(size)[:, None] ** 2 + np.fft.fftfreq(size)[None] ** 2)
        f[0, 0] = 1.0
        spec = (rng.normal(size=(size, size)) + 1j * rng.normal(size=(size, size))) / f ** (
            beta / 2)
        img = np.real(np.fft.ifft2(spec))
    elif kind == "stripes":
        y, x = np.mgrid[0:size, 0:size].astype(np.float64)
        img = np.zeros((size, size))
        for _ in range(int(rng.integers(1, 4))):
            a, period = rng.uniform(0, np.pi), rng.uniform(6, 60)
            phase = x * np.cos(a) + y * np.sin(a) + 8 * np.sin(y / rng.uniform(20, 80))
            img += np.sign(np.sin(2 * np.pi * phase / period)) * rng.uniform(0.3, 1)
    else:
        img = np.full((size, size), rng.uniform(), np.float32)
        n = int(rng.integers(150, 500))
        radii = size * 0.25 * rng.uniform(0.02, 1, n) ** 2.5 + 2
        for r in radii[np.argsort(-radii)] if rng.random() < 0.5 else radii:
            c = rng.uniform(0, size, 2)
            v = float(rng.uniform())
            shape = rng.integers(3)
            if shape == 0:
                cv2.circle(img, (int(c[0]), int(c[1])), int(r), v, -1, cv2.LINE_AA)
            elif shape == 1:
                d = r * np.array([np.cos(rng.uniform(0, np.pi)), np.sin(rng.uniform(0, np.pi))])
                box = cv2.boxPoints(((float(c[0]), float(c[1])), (float(2 * r),
                                     float(2 * r * rng.uniform(0.2, 1))),
                                     float(np.degrees(np.arctan2(d[1], d[0])))))
                cv2.fillPoly(img, [np.round(box).astype(np.int32)], v, cv2.LINE_AA)
            else:
                m = int(rng.integers(3, 8))
                phi = np.sort(rng.uniform(0, 2 * np.pi, m))
                pts = c + r * rng.uniform(0.4, 1, (m, 1)) * np.stack([np.cos(phi),
                                                                      np.sin(phi)], 1)
                cv2.fillPoly(img, [np.round(pts).astype(np.int32)], v, cv2.LINE_AA)
        img = img.astype(np.float64) + 0.05 * rng.normal(size=img.shape)
        img = cv2.GaussianBlur(img, (0, 0), rng.uniform(0.3, 1.0))
    lo, hi = np.percentile(img, [1, 99])
    img = np.clip((img - lo) / max(hi - lo, 1e-9), 0, 1)
    return _to_gray_float(img)


MIN_TEXTURED_FRACTION = 0.1  # of pixels with a Sobel gradient above 0.1 (grey in [0, 1])
MIN_MEAN_GRADIENT = 0.05  # photographs flatter than this (plain wallpapers) are not used
CROP_TRIES = 5


def textured_fraction(img: np.ndarray) -> float:
    """Fraction of pixels whose |d/dx| + |d/dy| (Sobel) exceeds 0.1."""
    g = np.abs(cv2.Sobel(img, cv2.CV_32F, 1, 0)) + np.abs(cv2.Sobel(img, cv2.CV_32F, 0, 1))
    return float(np.mean(g > 0.1))


@lru_cache(maxsize=2)
def textured_photo_names(split: str) -> tuple[str, ...]:
    """photo_names(split) without the flat ones (mean Sobel gradient < MIN_MEAN_GRADIENT)."""
    out = []
    for name in photo_names(split):
        img = _photo(name)
        if img is None:
            continue
        g = np.abs(cv2.Sobel(img, cv2.CV_32F, 1, 0)) + np.abs(cv2.Sobel(img, cv2.CV_32F, 0, 1))
        if g.mean() >= MIN_MEAN_GRADIENT:
            out.append(name)
    return tuple(out)


def sample_textures(seed: int, split: str = "train", n_photos: int = 4,
                    n_procedural: int = 2) -> tuple[np.ndarray, ...]:
    """A per-sequence texture set: random photographs of the split (random crop and zoom,
    random flip, random gamma) plus fresh procedural textures.

    Deterministic in (seed, split); the two splits never share a photograph and draw their
    procedural textures from different seed streams. Flat photographs are left out and flat
    crops redrawn (textured_fraction). Falls back to procedural textures only
    when the split has no readable photograph.
    """
    import zlib

    rng = np.random.default_rng([seed, zlib.crc32(split.encode())])
    names = textured_photo_names(split)
    out: list[np.ndarray] = []
    if names:
        for i in rng.choice(len(names), size=min(n_photos, len(names)), replace=False):
            img = _photo(names[int(i)])
            if img is None:
                continue
            h, w = img.shape
            for _ in range(CROP_TRIES):  # a crop with texture (flat sky, walls: redraw)
                zoom = rng.uniform(0.35, 1.0)
                ch, cw = max(32, int(h * zoom)), max(32, int(w * zoom))
                y0, x0 = int(rng.integers(0, h - ch + 1)), int(rng.integers(0, w - cw + 1))
                crop = img[y0:y0 + ch, x0:x0 + cw]
                if textured_fraction(crop) >= MIN_TEXTURED_FRACTION:
                    break
            else:
                continue
            if rng.random() < 0.5:
                crop = crop[:, ::-1]
            lo, hi = INTENSITY_RANGE
            g = (crop - lo) / (hi - lo)
            crop = lo + (hi - lo) * np.clip(g, 0, 1) ** rng.uniform(0.6, 1.6)
            out.append(np.ascontiguousarray(crop, dtype=np.float32))
    while len(out) < n_photos + n_procedural:
        out.append(procedural_texture(rng))
    return tuple(out)
