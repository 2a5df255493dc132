"""Exact ground-truth tracks: query points ride on their layer's similarity transform.

Visibility: 1 visible; 0 occluded (a nearer layer's alpha > 0.5 at the point); -1 outside the
image (pixel centres at integer coordinates, so the image spans [-0.5, W - 0.5] x [-0.5, H - 0.5]).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from blinktrack_ros.synth.config import SequenceConfig
from blinktrack_ros.synth.motion import apply_affine, invert_affine
from blinktrack_ros.synth.scene import Scene, alpha_at, layer_alpha_images, layer_inverse_maps

VISIBLE, OCCLUDED, OUTSIDE = 1, 0, -1
EDGE_MARGIN_PX = 4  # queries keep this distance from every alpha edge (one owner per patch)


@dataclass(frozen=True)
class GroundTruth:
    """Ground-truth tracks of N query points at S times.

    Attributes:
        ids: (N,) int64 track ids.
        times_ns: (S,) int64 sample times (every 1/gt_hz and every frame time).
        xy: (S, N, 2) float64 pixel xy.
        vis: (S, N) int8 visibility (VISIBLE, OCCLUDED, OUTSIDE).
        layer: (N,) int64 index of the layer each point belongs to (0 = background).
        uv: (N, 2) float64 texture xy of each point in its layer.
        query_t_ns: (N,) int64 time each point was seeded (a frame time). xy and vis are
            exact at every time, but a point's track starts at its query time: writers and
            `alive` skip earlier samples.
        end_t_ns: (N,) int64 last time of each track, or None (synthetic tracks never end);
            writers and `alive` skip later samples.
    """

    ids: np.ndarray
    times_ns: np.ndarray
    xy: np.ndarray
    vis: np.ndarray
    layer: np.ndarray
    uv: np.ndarray
    query_t_ns: np.ndarray
    end_t_ns: np.ndarray | None = None

    def alive(self) -> np.ndarray:
        """(S, N) bool: the point's track has started (times_ns >= query_t_ns) and, when
        end_t_ns is set (reference tracks that end, e.g. from real video), not yet ended."""
        out = self.times_ns[:, None] >= self.query_t_ns[None, :]
        if self.end_t_ns is not None:
            out &= self.times_ns[:, None] <= self.end_t_ns[None, :]
        return out


def select_queries(scene: Scene, frame: np.ndarray, config: SequenceConfig, t_s: float = 0.0,
                   max_corners: int | None = None,
                   exclude_xy: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray,
                                                                  np.ndarray]:
    """Shi-Tomasi corners of frame (H, W) at time t_s, away from every layer's alpha edge.

    Args:
        scene: the layers (alpha edges and owners).
        frame: (H, W) the image corners are found on.
        config: query parameters.
        t_s: the frame's time in seconds.
        max_corners: at most this many (default config.n_queries).
        exclude_xy: (M, 2) existing points; new corners keep query_min_distance from them.

    Returns:
        (N, 2) pixel xy, (N,) owning layer index (topmost layer with alpha > 0.5),
        (N, 2) texture xy in that layer.
    """
    alphas = layer_alpha_images(scene, t_s)  # L H W
    edge = ((alphas[1:] > 0.01) & (alphas[1:] < 0.99)).any(0).astype(np.uint8)
    k = 2 * EDGE_MARGIN_PX + 1
    keep = cv2.dilate(edge, np.ones((k, k), np.uint8)) == 0
    m = EDGE_MARGIN_PX + 4
    keep[:m], keep[-m:], keep[:, :m], keep[:, -m:] = False, False, False, False
    keep = keep.astype(np.uint8)
    for x, y in np.round(exclude_xy if exclude_xy is not None else []).astype(int):
        cv2.circle(keep, (int(x), int(y)), int(np.ceil(config.query_min_distance)), 0, -1)
    n_max = config.n_queries if max_corners is None else max_corners
    if n_max <= 0:
        return np.zeros((0, 2)), np.zeros(0, np.int64), np.zeros((0, 2))
    corners = cv2.goodFeaturesToTrack(
        np.ascontiguousarray(frame, np.float32), maxCorners=n_max,
        qualityLevel=config.query_quality, minDistance=config.query_min_distance,
        mask=keep, blockSize=5)
    if corners is None:
        return np.zeros((0, 2)), np.zeros(0, np.int64), np.zeros((0, 2))
    xy = corners.reshape(-1, 2).astype(np.float64)
    ix, iy = np.round(xy[:, 0]).astype(int), np.round(xy[:, 1]).astype(int)
    covering = alphas[:, iy, ix] > 0.5  # L N
    owner = (len(scene.layers) - 1 - np.argmax(covering[::-1], axis=0)).astype(np.int64)
    uv = np.zeros_like(xy)
    for k_layer in np.unique(owner):
        sel = owner == k_layer
        A_inv = invert_affine(scene.layers[k_layer].trajectory.matrices(t_s)[0])
        uv[sel] = apply_affine(A_inv, scene.to_world(t_s, xy[sel]))
    return xy, owner, uv


def track_points(scene: Scene, layer: np.ndarray, uv: np.ndarray,
                 times_ns: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Exact positions (S, N, 2) and visibility (S, N) int8 of points (N,) at times (S,) ns."""
    times_s = np.asarray(times_ns, np.float64) * 1e-9
    S, N = times_s.size, uv.shape[0]
    xy = np.zeros((S, N, 2))
    for k in np.unique(layer):
        sel = layer == k
        xy[:, sel] = apply_affine(scene.layers[k].trajectory.matrices(times_s), uv[sel])
    covered = np.zeros((S, N), bool)
    for j in range(1, len(scene.layers)):
        nearer = layer < j
        if not nearer.any():
            continue
        A_inv = layer_inverse_maps(scene.layers[j], times_s)
        covered[:, nearer] |= alpha_at(scene.layers[j], A_inv, xy[:, nearer]) > 0.5
    xy = scene.to_image(times_s, xy)  # occlusion is decided on the world plane
    inside = ((xy[..., 0] >= -0.5) & (xy[..., 0] <= scene.width - 0.5)
              & (xy[..., 1] >= -0.5) & (xy[..., 1] <= scene.height - 0.5))
    vis = np.where(inside, np.where(covered, OCCLUDED, VISIBLE), OUTSIDE).astype(np.int8)
    return xy, vis


def ground_truth(scene: Scene, frames: np.ndarray, frame_times_ns: np.ndarray,
                 config: SequenceConfig, times_ns: np.ndarray) -> GroundTruth:
    """Query points on the first frame (and re-queries, see config) tracked exactly.

    Args:
        scene: the layers and motions.
        frames: (T, H, W) output frames (corners are found on what a tracker sees).
        frame_times_ns: (T,) their times.
        config: query parameters.
        times_ns: (S,) sample times; must include the frame times.
    """
    times_ns = np.asarray(times_ns, np.int64)
    query_frames = [0]
    if config.requery_every_s > 0:
        wanted = np.arange(config.requery_every_s, frame_times_ns[-1] * 1e-9 + 1e-9,
                           config.requery_every_s) * 1e9
        query_frames += sorted({int(np.argmin(np.abs(frame_times_ns - w))) for w in wanted}
                               - {0})
    layer, uv, qt = np.zeros(0, np.int64), np.zeros((0, 2)), np.zeros(0, np.int64)
    for k in query_frames:
        t = int(frame_times_ns[k])
        xy_now, vis_now = track_points(scene, layer, uv, np.array([t]))
        visible = vis_now[0] == VISIBLE
        _, new_layer, new_uv = select_queries(
            scene, frames[k], config, t * 1e-9, config.n_queries - int(visible.sum()),
            xy_now[0][visible])
        layer, uv = np.r_[layer, new_layer], np.vstack([uv, new_uv])
        qt = np.r_[qt, np.full(new_layer.size, t, np.int64)]
    xy, vis = track_points(scene, layer, uv, times_ns)
    return GroundTruth(np.arange(layer.size, dtype=np.int64), times_ns, xy, vis, layer, uv, qt)


def write_gt_txt(gt: GroundTruth, path: Path, size: tuple[int, int] | None = None,
                 time_origin_ns: int = 0) -> None:
    """Write rows `id t x y vis` (t in seconds) from each query time on, by id then time;
    `size` (width, height) and a non-zero `time_origin_ns` (the bag stamp of t = 0) go into
    the header, where `blinktrack eval` and `blinktrack track` find them."""
    from blinktrack_ros.eval.tracks_io import time_origin_line

    S, N = gt.vis.shape
    ids = np.repeat(gt.ids, S)
    t = np.tile(gt.times_ns, N) * 1e-9
    xy = gt.xy.transpose(1, 0, 2).reshape(-1, 2)
    vis = gt.vis.T.reshape(-1)
    table = np.column_stack([ids, t, xy, vis])[gt.alive().T.reshape(-1)]
    header = "id t x y vis  (t in s; vis 1 visible, 0 occluded, -1 out of frame)"
    if size is not None:
        header += f"\nimage size {int(size[0])}x{int(size[1])}"
    if time_origin_ns:
        header += "\n" + time_origin_line(time_origin_ns)
    np.savetxt(path, table, fmt=["%d", "%.9f", "%.4f", "%.4f", "%d"], header=header)


def read_gt_txt(path: Path) -> np.ndarray:
    """Read a `<seq>.gt.txt` back: (M, 5) float64 rows id t x y vis."""
    return np.loadtxt(path, ndmin=2)
