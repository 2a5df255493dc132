"""Image observation source: one frame -> one position observation per track (image network).

The source keeps each track's reference (feature and birth position, sampled once at birth) in
an immutable `References` value that is replaced, never mutated, when tracks are added or removed.
One frame gives one observation per track, from the network's final refinement iteration.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
import torch

from blinktrack_ros.models.image_net import FrameFeatures, ImageNet
from blinktrack_ros.models.uncertainty import logits_to_covariance
from blinktrack_ros.tracking.observation import Observations, Source


@dataclass(frozen=True)
class ImageSourceConfig:
    """Visibility -> covariance mapping of the image module: r = r_max * (1 - p_vis)^b.

    Attributes:
        r_max: covariance (px^2) of a surely occluded feature.
        thre: 1 - p_vis at which r = 1 px^2 (sets b; 0.5 gives b = 3.32).
        r_min: lower bound of r, keeps R positive definite.
        start_inside: start each search at the prediction moved to the nearest pixel of the
            frame (the network sees nothing outside it).
    """

    r_max: float = 10.0
    thre: float = 0.5
    r_min: float = 1e-3
    start_inside: bool = True


@dataclass(frozen=True)
class References:
    """Per-track references, rows aligned: ids (N,) uint32, feats (N, C), positions_px (N, 2)."""

    ids: np.ndarray
    feats: torch.Tensor
    positions_px: torch.Tensor

    def __len__(self) -> int:
        return int(self.ids.shape[0])


@dataclass(frozen=True)
class DropCounts:
    """Observations not produced, by reason (cumulative)."""

    unknown_id: int = 0
    nonfinite_input: int = 0
    nonfinite_output: int = 0


def _as_ids(ids: np.ndarray | list[int]) -> np.ndarray:
    arr = np.asarray(ids)
    if arr.ndim != 1 or (arr.size and (not np.issubdtype(arr.dtype, np.integer) or arr.min() < 0)):
        raise ValueError(f"ids must be a 1-D array of non-negative integers, got {arr!r}")
    if np.unique(arr).size != arr.size:
        raise ValueError("ids must be unique within one call")
    return arr.astype(np.uint32)


def _as_positions(positions: np.ndarray, n: int) -> np.ndarray:
    arr = np.asarray(positions, dtype=np.float64)
    if arr.shape != (n, 2):
        raise ValueError(f"expected positions of shape ({n}, 2) pixel xy, got {arr.shape}")
    return arr


class ImageSource:
    """Runs the image network for the live tracks of a frame camera."""

    def __init__(self, model: ImageNet, config: ImageSourceConfig | None = None) -> None:
        self.model = model.eval()
        if hasattr(model, "use_traced_steps"):  # the patch network: one graph call per step
            model.use_traced_steps()
        # (log_r0, slope) fitted for these weights, if their checkpoint has it
        self.fusion_noise = getattr(model, "fusion_noise", None)
        self.config = config or ImageSourceConfig()
        param = next(model.parameters())
        self._references = References(np.zeros(0, np.uint32),
                                      param.new_zeros((0, model.reference_dim)),
                                      param.new_zeros((0, 2)))
        self._drops = DropCounts()
        self.nonfinite_ids = np.zeros(0, np.uint32)  # non-finite outputs not yet taken

    @property
    def references(self) -> References:
        """The current per-track references (an immutable value)."""
        return self._references

    @property
    def track_ids(self) -> np.ndarray:
        """(N,) uint32 ids of the tracks with a reference."""
        return self._references.ids.copy()

    @property
    def drops(self) -> DropCounts:
        """Cumulative counts of observations dropped, by reason."""
        return self._drops

    def encode(self, gray: np.ndarray | torch.Tensor) -> FrameFeatures:
        """Encode a (H, W) float gray frame in [0, 1] once (reuse for observe and add_tracks)."""
        image = gray if torch.is_tensor(gray) else torch.as_tensor(np.asarray(gray))
        if not image.is_floating_point():
            raise ValueError("gray frames must be float in [0, 1]; divide uint8 frames by 255")
        if image.ndim != 2:
            raise ValueError(f"expected a (H, W) gray frame, got shape {tuple(image.shape)}")
        if not bool(torch.isfinite(image).all()):
            raise ValueError("gray frame contains NaN or infinite values")
        with torch.inference_mode():
            return self.model.encode_frame(image)

    def add_tracks(self, ids: np.ndarray | list[int], frame: FrameFeatures | np.ndarray,
                   positions_px: np.ndarray) -> None:
        """Start tracks: sample their reference features once on `frame` at positions (N, 2) px."""
        new_ids = _as_ids(ids)
        positions = _as_positions(positions_px, new_ids.size)
        if not np.isfinite(positions).all():
            raise ValueError("birth positions must be finite")
        taken = np.intersect1d(new_ids, self._references.ids)
        if taken.size:
            raise ValueError(f"track ids already present: {taken.tolist()}")
        features = frame if isinstance(frame, FrameFeatures) else self.encode(frame)
        refs = self._references
        points = torch.as_tensor(positions, dtype=refs.positions_px.dtype,
                                 device=refs.positions_px.device)
        with torch.inference_mode():
            feats = self.model.sample_reference(features, points)
        self._references = References(np.concatenate((refs.ids, new_ids)),
                                      torch.cat((refs.feats, feats)),
                                      torch.cat((refs.positions_px, points)))

    def remove_tracks(self, ids: np.ndarray | list[int]) -> int:
        """Forget tracks; returns how many were present (unknown ids are ignored)."""
        refs = self._references
        keep = ~np.isin(refs.ids, np.asarray(ids, dtype=np.int64))
        rows = torch.as_tensor(np.flatnonzero(keep), device=refs.feats.device)
        self._references = References(refs.ids[keep], refs.feats[rows], refs.positions_px[rows])
        return int((~keep).sum())

    def observe(self, t_ns: int, frame: FrameFeatures | np.ndarray, ids: np.ndarray | list[int],
                predicted_positions: np.ndarray) -> Observations:
        """Observe tracks `ids` on one frame, starting at their predicted positions (N, 2) px.

        Unknown ids and non-finite predictions or outputs are dropped and counted in `drops`.
        Returns one observation per remaining track (the final refinement iteration).
        """
        query_ids = _as_ids(ids)
        predicted = _as_positions(predicted_positions, query_ids.size)
        refs = self._references
        row_of = {int(track_id): row for row, track_id in enumerate(refs.ids)}
        known = np.array([int(i) in row_of for i in query_ids], dtype=bool)
        finite = np.isfinite(predicted).all(axis=1)
        self._drops = replace(self._drops, unknown_id=self._drops.unknown_id + int((~known).sum()),
                              nonfinite_input=self._drops.nonfinite_input
                              + int((known & ~finite).sum()))
        use = known & finite
        if not use.any():
            return Observations.empty(Source.IMAGE, t_ns)
        features = frame if isinstance(frame, FrameFeatures) else self.encode(frame)
        rows = torch.as_tensor([row_of[int(i)] for i in query_ids[use]],
                               device=refs.feats.device)
        start_np = predicted[use]
        if self.config.start_inside:
            # outside the frame the patches replicate its border: a track predicted out of
            # view searched a smear of border pixels, found nothing and coasted on at its last
            # velocity (real EC frames: three of 20 tracks ended 200-1000 px outside the
            # image); from inside, the search finds the feature again when it comes back
            h, w = features.image_size
            start_np = np.clip(start_np, 0.0, [w - 1.0, h - 1.0])
        start = torch.as_tensor(start_np, dtype=refs.positions_px.dtype,
                                device=refs.positions_px.device)
        with torch.inference_mode():
            positions, logits = self.model.track(features, refs.feats[rows], start,
                                                 refs.positions_px[rows])
            cov, p_vis = logits_to_covariance(logits, self.config.r_max, self.config.thre,
                                              self.config.r_min)
        positions_np = positions.double().cpu().numpy()  # N 2
        cov_np = cov.double().cpu().numpy()  # N 2 2
        vis_np = p_vis.double().cpu().numpy()  # N
        ok = (np.isfinite(positions_np).all(axis=1) & np.isfinite(cov_np).all(axis=(1, 2))
              & np.isfinite(vis_np))
        self._drops = replace(self._drops,
                              nonfinite_output=self._drops.nonfinite_output + int((~ok).sum()))
        self.nonfinite_ids = np.union1d(self.nonfinite_ids, query_ids[use][~ok]).astype(np.uint32)
        return Observations(Source.IMAGE, int(t_ns), query_ids[use][ok], positions_np[ok],
                            cov_np[ok], vis_np[ok])
