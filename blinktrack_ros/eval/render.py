"""Draw feature tracks over grayscale frames and write an animated GIF (MP4 when possible).

Track rows are `id t x y [vis]` (t in s). At a frame time a track is drawn where its samples
span that time (positions interpolated linearly); outside its span it is lost and not drawn.
The optional 5th column says visible (>= 0.5: filled dot, solid tail) or occluded (hollow
circle, dashed tail) at the latest sample at or before the frame; a negative value marks a lost
sample (not drawn). Ground truth, when given, is drawn as small grey crosses.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from blinktrack_ros.eval.metrics import group_tracks

_SHIFT = 4  # cv2 fixed-point bits: sub-pixel drawing
_ONE = 1 << _SHIFT


@dataclass(frozen=True)
class RenderStyle:
    """How tracks are drawn: tail length (s), upscaling (0: x2 below 400 px wide), marker size."""

    tail_s: float = 0.15
    scale: int = 0
    radius_px: int = 3
    draw_ids: bool = True


def track_colour(track_id: float) -> tuple[int, int, int]:
    """A distinct, stable RGB colour per id (golden-ratio hue steps)."""
    hue = int((float(track_id) * 0.618033988749895 % 1.0) * 179)
    hsv = np.uint8([[[hue, 220, 255]]])
    return tuple(int(c) for c in cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB)[0, 0])


def _pt(xy: np.ndarray, scale: int) -> tuple[int, int]:
    # pixel centres at integer coordinates: centre of upscaled pixel i is i * scale + (scale-1)/2
    x, y = (xy * scale + (scale - 1) / 2.0) * _ONE
    return int(round(x)), int(round(y))


def _state_at(rows: np.ndarray, t: float, tail_s: float):
    """(position (2,), visible, tail (M, 2)) of one track at time t, or None when lost."""
    times = rows[:, 0]
    if t < times[0] or t > times[-1]:
        return None
    last = int(np.searchsorted(times, t, side="right")) - 1
    if rows.shape[1] >= 4 and rows[last, 3] < 0:
        return None
    pos = np.array([np.interp(t, times, rows[:, 1]), np.interp(t, times, rows[:, 2])])
    visible = rows.shape[1] < 4 or rows[last, 3] >= 0.5
    in_tail = (times >= t - tail_s) & (times <= t)
    tail = np.vstack([rows[in_tail, 1:3], pos[None]])
    return pos, bool(visible), tail


def _draw_tail(img: np.ndarray, tail: np.ndarray, colour, scale: int, dashed: bool) -> None:
    pts = [_pt(p, scale) for p in tail]
    for i in range(len(pts) - 1):
        if dashed and i % 2:
            continue
        cv2.line(img, pts[i], pts[i + 1], colour, 1, cv2.LINE_AA, _SHIFT)


def render_frame(frame: np.ndarray, t_s: float, tracks: dict[float, np.ndarray],
                 gt: dict[float, np.ndarray] | None = None,
                 style: RenderStyle = RenderStyle()) -> np.ndarray:
    """One annotated frame.

    Args:
        frame: (H, W) uint8 grayscale.
        t_s: frame time in seconds (the tracks' clock).
        tracks: id -> (M, 3|4) time-sorted rows `t x y [vis]` (see `group_tracks`).
        gt: optional ground truth in the same form.
        style: drawing options.

    Returns:
        (H * scale, W * scale, 3) uint8 RGB image.
    """
    s = style.scale or (2 if frame.shape[1] < 400 else 1)
    big = cv2.resize(frame, None, fx=s, fy=s, interpolation=cv2.INTER_NEAREST)
    img = np.ascontiguousarray(cv2.cvtColor(big, cv2.COLOR_GRAY2RGB))
    for rows in (gt or {}).values():
        state = _state_at(rows, t_s, 0.0)
        if state is not None:
            cv2.drawMarker(img, tuple(v >> _SHIFT for v in _pt(state[0], s)), (200, 200, 200),
                           cv2.MARKER_CROSS, 2 * style.radius_px, 1)
    for track_id, rows in tracks.items():
        state = _state_at(rows, t_s, style.tail_s)
        if state is None:
            continue
        pos, visible, tail = state
        colour = track_colour(track_id)
        _draw_tail(img, tail, colour, s, dashed=not visible)
        centre = _pt(pos, s)
        radius = style.radius_px * _ONE
        cv2.circle(img, centre, radius, colour, -1 if visible else 1, cv2.LINE_AA, _SHIFT)
        if style.draw_ids:
            org = ((centre[0] >> _SHIFT) + style.radius_px + 1, (centre[1] >> _SHIFT) - 2)
            cv2.putText(img, str(int(track_id)), org, cv2.FONT_HERSHEY_PLAIN, 0.7, colour, 1)
    return img


def render_tracks(frames: list[np.ndarray], frame_times_ns: np.ndarray, tracks: np.ndarray,
                  gt: np.ndarray | None = None, style: RenderStyle = RenderStyle(),
                  progress: bool = False) -> list[np.ndarray]:
    """Annotate every frame; tracks/gt are rows `id t x y [vis]` (t in s)."""
    from tqdm import tqdm

    by_id = {k: v[np.argsort(v[:, 0], kind="stable")] for k, v in group_tracks(tracks).items()}
    gt_by_id = None if gt is None else group_tracks(gt)
    frames = [f if f.dtype == np.uint8 else
              (np.clip(f, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8) for f in frames]
    pairs = zip(frames, np.asarray(frame_times_ns))
    return [render_frame(f, float(t) * 1e-9, by_id, gt_by_id, style)
            for f, t in tqdm(pairs, total=len(frames), desc="rendering", unit="frame",
                             disable=not progress)]


def mp4_available() -> bool:
    """True when imageio can write MP4 (the optional imageio-ffmpeg package is installed)."""
    try:
        import imageio_ffmpeg  # noqa: F401
    except ImportError:
        return False
    return True


def write_animation(images: list[np.ndarray], out_base: str | Path, fps: float = 10.0,
                    mp4: bool = True) -> list[Path]:
    """Write `<out_base>.gif` always and `<out_base>.mp4` when requested and available.

    Returns:
        The paths written.
    """
    from PIL import Image

    if not images:
        raise ValueError("no frames to write")
    out_base = Path(out_base)
    out_base.parent.mkdir(parents=True, exist_ok=True)
    gif = out_base.with_suffix(".gif")
    pil = [Image.fromarray(im) for im in images]
    pil[0].save(gif, save_all=True, append_images=pil[1:], duration=int(round(1000.0 / fps)),
                loop=0)
    written = [gif]
    if mp4 and mp4_available():
        import imageio

        path = out_base.with_suffix(".mp4")
        imageio.mimsave(path, images, fps=fps, macro_block_size=1)
        written.append(path)
    return written
