"""Track files: tolerant reading with clear errors, and sequence-name matching."""

from __future__ import annotations

import shutil

import numpy as np
import pytest

from blinktrack_ros.eval.tracks_io import TrackFileError, match_sequences, read_tracks


def test_reads_commas_header_and_comments(tmp_path):
    path = tmp_path / "a.txt"
    path.write_text("id,t,x,y\n# note\n0,0.5,1.5,2\n\n1,0.5,3,4  # trailing\n")
    np.testing.assert_array_equal(read_tracks(path), [[0, 0.5, 1.5, 2], [1, 0.5, 3, 4]])


@pytest.mark.parametrize("text, message", [
    ("0 0.1 1 2\n0 0.2 1\n", ":2: 3 columns"),
    ("0 0.1 1 2\nzero 0.2 1 2\n", ":2: not numeric"),
    ("0 0.1 1\n0 0.2 1\n", "expected 4 or 5 columns"),
    ("0 0.1 nan 2\n", "non-finite"),
    ("# only a comment\n", "no track rows"),
])
def test_bad_files_name_the_problem(tmp_path, text, message):
    path = tmp_path / "bad.txt"
    path.write_text(text)
    with pytest.raises(TrackFileError, match=message):
        read_tracks(path)


def test_eds_prefix_and_range_suffix_match(shared_data, tmp_path):
    gt_dir = shared_data / "ec_eds_gt" / "eds" / "gt_tracks"
    pred = tmp_path / "pred"
    pred.mkdir()
    for name in ("peanuts_light_160_386", "ziggy_in_the_arena_1350_1650"):
        (pred / f"{name}.txt").write_text("0 0 1 1\n")
    pairs = match_sequences(pred, gt_dir)
    assert [(p.name, p.gt_path.name) for p in pairs] == [
        ("peanuts_light_160_386", "01_peanuts_light.gt.txt"),
        ("ziggy_in_the_arena_1350_1650", "14_ziggy_in_the_arena.gt.txt")]


def test_ambiguous_names_are_reported(shared_data, tmp_path):
    gt = tmp_path / "gt"
    gt.mkdir()
    src = shared_data / "ec_eds_gt" / "eds" / "gt_tracks" / "01_peanuts_light.gt.txt"
    shutil.copy(src, gt / "01_peanuts_light.gt.txt")
    shutil.copy(src, gt / "03_peanuts_light.gt.txt")
    pred = tmp_path / "peanuts_light_160_386.txt"
    pred.write_text("0 0 1 1\n")
    with pytest.raises(ValueError, match="several ground-truth files"):
        match_sequences(pred.parent, gt)


def test_occ_ground_truth_name_matches(tmp_path):
    gt = tmp_path / "gt"
    gt.mkdir()
    (gt / "shapes_6dof_occ.gt.txt").write_text("0 0 1 1 1\n")
    (tmp_path / "shapes_6dof_485_565.txt").write_text("0 0 1 1\n")
    pairs = match_sequences(tmp_path / "shapes_6dof_485_565.txt", gt)
    assert pairs[0].gt_path.name == "shapes_6dof_occ.gt.txt"
