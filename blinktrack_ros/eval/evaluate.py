"""Evaluate prediction files against ground-truth files: the library side of `blinktrack eval`."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import numpy as np

from blinktrack_ros.eval.metrics import delta_metrics, feature_age_metrics, mean_metrics
from blinktrack_ros.eval.tracks_io import (
    header_image_size,
    header_time_origin_ns,
    match_sequences,
    read_tracks,
    time_shift_s,
)

# Image sizes of the public benchmarks (for the delta metrics' rescaling to 256 x 256).
EC_SIZE = (240, 180)  # DAVIS240C
EDS_SIZE = (640, 480)
_EC_WORDS = ("shapes", "boxes")
_EDS_WORDS = ("peanuts", "rocket_earth", "ziggy")


def known_image_size(name: str) -> tuple[int, int] | None:
    """(width, height) of an EC or EDS sequence recognised by its name, else None."""
    if any(w in name for w in _EC_WORDS):
        return EC_SIZE
    if any(w in name for w in _EDS_WORDS):
        return EDS_SIZE
    return None


def sequence_metrics(name: str, pred: np.ndarray, gt: np.ndarray, corrected: bool = False,
                     truncate_pred: bool = False, image_size: tuple[int, int] | None = None
                     ) -> dict:
    """Feature-age metrics of one sequence, plus delta metrics when GT has visibility.

    Args:
        name: sequence name (used to look up the image size when `image_size` is None).
        pred: (N, 4+) rows `id t x y`.
        gt: (K, 4|5) rows `id t x y [vis]`.
        corrected: fix the reference's index quirk (see `metrics`).
        truncate_pred: truncate predicted x, y to integers first.
        image_size: (width, height) for the delta metrics.

    Raises:
        ValueError: GT has visibility but the image size is unknown.
    """
    metrics = feature_age_metrics(pred, gt, corrected=corrected, truncate_pred=truncate_pred)
    if gt.shape[1] >= 5:
        size = image_size or known_image_size(name)
        if size is None:
            raise ValueError(f"ground truth of {name} has a visibility column; the delta "
                             "metrics need the image size: pass --size WIDTHxHEIGHT")
        metrics.update(delta_metrics(pred, gt, *size, truncate_pred=truncate_pred))
    return metrics


def summarize(per_sequence: dict[str, dict]) -> dict:
    """`{"sequences": per_sequence, "mean": mean over sequences}`."""
    return {"sequences": per_sequence, "mean": mean_metrics(per_sequence)}


def evaluate_paths(pred: str | Path, gt: str | Path, corrected: bool = False,
                   truncate_pred: bool = False, image_size: tuple[int, int] | None = None,
                   progress: bool = False) -> dict:
    """Evaluate prediction files or folders against ground truth, matched by sequence name.

    Returns:
        `{"sequences": {name: metrics}, "mean": metrics}` (see `metrics.feature_age_metrics`
        and `metrics.delta_metrics` for the keys).

    Raises:
        FileNotFoundError, ValueError: missing files, unmatched names, unreadable rows.
    """
    pairs = match_sequences(pred, gt)
    items: Iterable = pairs
    if progress and len(pairs) > 1:
        from tqdm import tqdm

        items = tqdm(pairs, desc="sequences", unit="seq")
    per_sequence = {}
    for pair in items:
        pred_rows = read_tracks(pair.pred_path)
        # t counts from each file's `# time origin`: align the predictions on the ground truth's
        pred_rows[:, 1] += time_shift_s(pair.pred_path, pred_rows[:, 1],
                                        header_time_origin_ns(pair.gt_path))
        per_sequence[pair.name] = sequence_metrics(
            pair.name, pred_rows, read_tracks(pair.gt_path),
            corrected=corrected, truncate_pred=truncate_pred,
            image_size=image_size or header_image_size(pair.gt_path))
    return summarize(per_sequence)
