"""Track rendering (visible / occluded / lost), plots and the markdown/CSV report."""

from __future__ import annotations

import csv

import numpy as np
from PIL import Image

from blinktrack_ros.eval.plots import plot_age_vs_threshold, plot_sequence_bars
from blinktrack_ros.eval.render import RenderStyle, render_tracks, track_colour, write_animation
from blinktrack_ros.eval.report import json_safe, sequence_table, write_report

STYLE = RenderStyle(scale=1, radius_px=4, draw_ids=False, tail_s=0.0)


def _one_track(vis: float, t=(0.0, 1.0)) -> np.ndarray:
    return np.array([[3, t[0], 20.0, 20.0, vis], [3, t[1], 20.0, 20.0, vis]])


def test_visible_filled_occluded_hollow_lost_absent():
    frame = np.zeros((40, 40), np.uint8)
    times_ns = np.array([500_000_000])  # 0.5 s
    colour = np.array(track_colour(3))
    visible = render_tracks([frame], times_ns, _one_track(1.0), style=STYLE)[0]
    occluded = render_tracks([frame], times_ns, _one_track(0.0), style=STYLE)[0]
    lost = render_tracks([frame], times_ns, _one_track(1.0, t=(0.6, 1.0)), style=STYLE)[0]
    assert visible.shape == (40, 40, 3)
    np.testing.assert_array_equal(visible[20, 20], colour)  # filled dot at the centre
    assert occluded[20, 20].sum() == 0  # hollow: centre untouched ...
    assert np.abs(occluded[20, 24].astype(int) - colour).max() < 100  # ... ring drawn at r = 4
    assert lost.sum() == 0  # outside the track's span: nothing drawn


def test_gif_written_with_all_frames(tmp_path):
    frames = [np.full((30, 40), v, np.uint8) for v in (0, 80, 160)]
    images = render_tracks(frames, np.array([0, 500_000_000, 1_000_000_000]), _one_track(1.0))
    paths = write_animation(images, tmp_path / "v", fps=5, mp4=False)
    assert paths == [tmp_path / "v.gif"]
    with Image.open(paths[0]) as gif:
        assert gif.n_frames == 3 and gif.size == (80, 60)  # default scale 2


def _result(fa: float) -> dict:
    seq = {"feature_age": fa, "expected_feature_age": fa * 0.9, "inlier_ratio": 0.9,
           "age_5": fa / 2, "te_5": 1.5, "thresholds_px": [1.0, 2.0],
           "feature_age_per_threshold": [fa / 2, fa], "inlier_ratio_per_threshold": [0.8, 1.0],
           "expected_feature_age_per_threshold": [0.4 * fa, fa],
           "delta_occ": float("nan")}
    return {"sequences": {"a": seq, "b": dict(seq)}, "mean": dict(seq)}


def test_report_markdown_csv_and_json_safety(tmp_path):
    results = {"e": _result(0.5), "ei": _result(0.8)}
    md, csv_path = write_report(results, tmp_path)
    text = md.read_text()
    assert "## e" in text and "## ei" in text and "| mean |" in text and "0.8000" in text
    with csv_path.open() as f:
        rows = list(csv.DictReader(f))
    assert [(r["mode"], r["sequence"]) for r in rows] == [
        ("e", "a"), ("e", "b"), ("e", "mean"), ("ei", "a"), ("ei", "b"), ("ei", "mean")]
    assert float(rows[3]["feature_age"]) == 0.8 and rows[0]["delta_occ"] == "nan"
    assert json_safe(results)["e"]["mean"]["delta_occ"] is None
    assert sequence_table(results["e"]).count("\n") == 4  # header, rule, a, b, mean


def test_plots_are_png(tmp_path):
    results = {"e": _result(0.5), "ei": _result(0.8)}
    for path in (plot_age_vs_threshold(results, tmp_path / "age.png"),
                 plot_sequence_bars(results, tmp_path / "bars.png")):
        with Image.open(path) as im:
            assert im.format == "PNG" and im.size[0] >= 600
