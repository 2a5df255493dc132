"""Seeding: Shi-Tomasi top-up on a real frame, and seeds from EC/EDS ground-truth files."""

from __future__ import annotations

import csv
from pathlib import Path

import cv2
import numpy as np
import pytest

from blinktrack_ros.tracking.seeding import SeedConfig, detect_seeds, load_seeds


def _pairwise_min(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.linalg.norm(a[:, None] - b[None], axis=2).min())


@pytest.mark.data
def test_shi_tomasi_tops_up_with_spacing_mask_and_border(shared_data: Path) -> None:
    path = shared_data / "ec_slider_depth" / "images" / "frame_00000000.png"
    gray = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE).astype(np.float32) / 255.0
    cfg = SeedConfig(target_count=50, min_distance_px=12.0, border_px=15)
    first = detect_seeds(gray, np.zeros((0, 2)), cfg)
    assert len(first) == 50  # a textured 240x180 frame has far more than 50 corners
    h, w = gray.shape
    assert first[:, 0].min() >= 15 and first[:, 0].max() <= w - 16
    assert first[:, 1].min() >= 15 and first[:, 1].max() <= h - 16
    d = np.linalg.norm(first[:, None] - first[None], axis=2) + np.eye(50) * 1e9
    assert d.min() >= 12.0
    alive = first[:30]
    more = detect_seeds(gray, alive, cfg)
    assert len(more) == 20
    assert _pairwise_min(more, alive) >= 12.0 - 1.0  # mask discs are rasterised
    assert len(detect_seeds(gray, first, cfg)) == 0  # already at the target


def test_flat_image_gives_no_seeds_and_bad_input_raises() -> None:
    assert detect_seeds(np.full((100, 100), 0.5, np.float32), np.zeros((0, 2))).shape == (0, 2)
    with pytest.raises(ValueError, match="grayscale"):
        detect_seeds(np.zeros((10, 10, 3), np.uint8), np.zeros((0, 2)))
    with pytest.raises(ValueError):
        SeedConfig(quality_level=0.0)


@pytest.mark.data
@pytest.mark.parametrize("name", ["ec/gt_tracks/shapes_6dof.gt.txt",
                                  "eds/gt_tracks/01_peanuts_light.gt.txt"])
def test_load_seeds_takes_each_ids_earliest_row(shared_data: Path, name: str) -> None:
    path = shared_data / "ec_eds_gt" / name
    earliest: dict[int, tuple[float, float, float]] = {}
    with path.open() as f:  # independent parse with the csv module
        for row in csv.reader(f, delimiter=" "):
            i, t, x, y = int(float(row[0])), float(row[1]), float(row[2]), float(row[3])
            if i not in earliest or t < earliest[i][0]:
                earliest[i] = (t, x, y)
    seeds = load_seeds(path)
    assert seeds.ids.tolist() == sorted(earliest)
    expected = np.array([earliest[i] for i in sorted(earliest)])
    np.testing.assert_array_equal(seeds.t_s, expected[:, 0])
    np.testing.assert_array_equal(seeds.positions_px, expected[:, 1:])


def test_load_seeds_with_visibility_and_errors(tmp_path: Path) -> None:
    good = tmp_path / "tracks.txt"
    good.write_text("3 0.5 10 20 1\n3 0.2 11 21 0\n1 0.7 5 6 1\n")
    seeds = load_seeds(good)
    assert seeds.ids.tolist() == [1, 3] and seeds.t_s.tolist() == [0.7, 0.2]
    assert seeds.visibility.tolist() == [1.0, 0.0]
    bad = tmp_path / "bad.txt"
    bad.write_text("1 0.1 2\n")
    with pytest.raises(ValueError, match="id t x y"):
        load_seeds(bad)
    with pytest.raises(FileNotFoundError):
        load_seeds(tmp_path / "missing.txt")
