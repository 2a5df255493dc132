"""Official Deep-EV-Tracker predictions on EC against the benchmark ground truth, and the CLI."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from blinktrack_ros.cli import main
from blinktrack_ros.eval.evaluate import evaluate_paths
from blinktrack_ros.eval.tracks_io import match_sequences, read_tracks, write_tracks

# Output of the public reference script (scripts/benchmark.py) on boxes_rotation_198_278 with
# these predictions, as committed by a reproduction study (JornTeurlings/deep_ev_tracker,
# benchmark_results/benchmarking_results.csv, commit 592b2b5): the numbers it printed.
REFERENCE_BOXES_ROTATION = {
    "age_5": 0.35925239434896905, "age_5_std": 0.2488933515025937,
    "te_5": 1.860484021875593, "te_5_std": 0.419082142533029,
    "feature_age": 0.6593035517918989, "feature_age_std": 0.25246666936353507,
    "inlier_ratio": 0.9508448540706604, "inlier_ratio_std": 0.17253605016404272,
    "expected_feature_age": 0.6561666849555009,
}
EC_NAMES = ["boxes_rotation_198_278", "boxes_translation_330_410", "shapes_6dof_485_565",
            "shapes_rotation_165_245", "shapes_translation_8_88"]


@pytest.fixture(scope="module")
def ec(shared_data):
    return shared_data / "ddft_pred_ec", shared_data / "ec_eds_gt" / "ec" / "gt_tracks"


@pytest.fixture(scope="module")
def ec_result(ec):
    return evaluate_paths(*ec)


def test_names_match_across_suffixes(ec):
    pairs = match_sequences(*ec)
    assert [p.name for p in pairs] == EC_NAMES
    assert all(p.gt_path.name == p.name.rsplit("_", 2)[0] + ".gt.txt" for p in pairs)


def test_reproduces_the_reference_script_output(ec_result):
    m = ec_result["sequences"]["boxes_rotation_198_278"]
    for key, value in REFERENCE_BOXES_ROTATION.items():
        assert m[key] == pytest.approx(value, rel=1e-12, abs=1e-12), key


def test_all_sequences_plausible_and_corrected_not_lower(ec, ec_result):
    corrected = evaluate_paths(*ec, corrected=True)
    for name in EC_NAMES:
        m, c = ec_result["sequences"][name], corrected["sequences"][name]
        assert 0.5 < m["expected_feature_age"] <= m["feature_age"] <= 1.0
        assert 0.9 < m["inlier_ratio"] <= 1.0 and 0 < m["te_5"] < 5
        assert m["n_tracks"] > 10 and m["n_skipped_short"] == 0
        # The reference's index shift only shortens ages: the corrected variant is never lower.
        assert c["expected_feature_age"] >= m["expected_feature_age"]
        assert np.all(np.array(c["inlier_ratio_per_threshold"])
                      >= np.array(m["inlier_ratio_per_threshold"]))
    mean = ec_result["mean"]
    assert mean["n_sequences"] == 5
    assert mean["feature_age"] == pytest.approx(
        np.mean([ec_result["sequences"][n]["feature_age"] for n in EC_NAMES]))


def test_truncation_is_idempotent_on_integer_predictions(ec, ec_result):
    # The reference trackers already wrote integers: truncating changes nothing.
    assert evaluate_paths(*ec, truncate_pred=True) == ec_result


def test_roundtrip_write_read(tmp_path, ec):
    tracks = read_tracks(ec[0] / "shapes_6dof_485_565.txt")
    write_tracks(tmp_path / "a.txt", tracks)
    np.testing.assert_allclose(read_tracks(tmp_path / "a.txt"), tracks, atol=1e-9)


def test_cli_json_and_table(ec, ec_result, capsys):
    assert main(["eval", "--pred", str(ec[0]), "--gt", str(ec[1]), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert set(out) == {"sequences", "mean"} and sorted(out["sequences"]) == EC_NAMES
    for key in ("feature_age", "expected_feature_age", "inlier_ratio", "age_5", "te_5"):
        assert out["mean"][key] == pytest.approx(ec_result["mean"][key])
    assert main(["eval", "--pred", str(ec[0]), "--gt", str(ec[1])]) == 0
    table = capsys.readouterr().out
    assert "| mean |" in table and all(n in table for n in EC_NAMES)


def test_cli_errors_name_the_problem(tmp_path, ec, capsys):
    shutil.copy(ec[0] / "shapes_6dof_485_565.txt", tmp_path / "unknown_seq.txt")
    assert main(["eval", "--pred", str(tmp_path), "--gt", str(ec[1])]) == 2
    err = capsys.readouterr().err
    assert "unknown_seq.txt" in err and "shapes_6dof.gt.txt" in err
    assert main(["eval", "--pred", str(tmp_path / "missing"), "--gt", str(ec[1])]) == 2
    assert "not found" in capsys.readouterr().err


def test_header_comments_and_visibility_column(tmp_path, ec):
    gt = read_tracks(ec[1] / "shapes_6dof.gt.txt")
    vis = np.concatenate([gt, np.ones((gt.shape[0], 1))], axis=1)
    body = "\n".join(" ".join(f"{v:.9f}" for v in r) for r in vis)
    (tmp_path / "shapes_6dof.gt.txt").write_text("id t x y vis\n# comment\n" + body + "\n")
    res = evaluate_paths(ec[0] / "shapes_6dof_485_565.txt", tmp_path)
    m = res["sequences"]["shapes_6dof_485_565"]
    assert m["n_samples_occ"] == 0 and np.isnan(m["delta_occ"])
    assert 0 < m["delta_all"] == m["delta_vis"] <= 1
