"""`blinktrack benchmark`: per-preset comparison against KLT, zero-motion floor, frame-only EC."""

from __future__ import annotations

import json

import numpy as np
import pytest

from blinktrack_ros.eval.benchmark import (
    comparison_markdown,
    comparison_rows,
    preset_of,
    zero_motion_tracker,
)


def _metrics(fa, a5, docc):
    return {"feature_age": fa, "age_5": a5, "delta_occ": docc}


def test_comparison_rows_differences_and_summary():
    results = {
        "ei": {"sequences": {"davis_s7_0000": _metrics(0.5, 0.4, 0.2),
                             "davis_s7_0001": _metrics(0.7, 0.6, 0.4),
                             "fast_s7_0000": _metrics(0.3, 0.2, float("nan"))}},
        "klt": {"sequences": {"davis_s7_0000": _metrics(0.6, 0.5, 0.1),
                              "davis_s7_0001": _metrics(0.6, 0.5, 0.1),
                              "fast_s7_0000": _metrics(0.5, 0.4, 0.3)}},
    }
    rows = comparison_rows(results)
    assert rows["davis"]["ei:feature_age"] == pytest.approx(0.6)
    assert rows["davis"]["ei - klt:feature_age"] == pytest.approx(0.0)
    assert rows["davis"]["ei - klt:delta_occ"] == pytest.approx(0.2)
    assert rows["fast"]["ei - klt:feature_age"] == pytest.approx(-0.2)
    # summary: each preset weighted equally; NaN presets left out of that column's mean
    assert rows["summary"]["ei - klt:feature_age"] == pytest.approx(-0.1)
    assert rows["summary"]["ei - klt:delta_occ"] == pytest.approx(0.2)
    text = comparison_markdown(rows)
    assert "ei - klt FA" in text and "+0.200" in text and "-0.200" in text
    # the difference e - klt never overwrites the mode e-klt's own value
    results["e"] = results["ei"]
    results["e-klt"] = {"sequences": {k: _metrics(0.9, 0.9, 0.9)
                                      for k in results["klt"]["sequences"]}}
    rows = comparison_rows(results)
    assert rows["davis"]["e-klt:feature_age"] == pytest.approx(0.9)
    assert rows["davis"]["e - klt:feature_age"] == pytest.approx(0.0)
    assert rows["davis"]["e-klt - klt:feature_age"] == pytest.approx(0.3)
    assert preset_of("davis_s2027_0002") == "davis" and preset_of("hfr_truck_s0") == "hfr_truck"
    assert preset_of("shapes_translation_8_88") == "shapes_translation_8_88"


def test_zero_motion_reports_the_seed_at_every_frame():
    seq = type("S", (), {"frame_times_ns": np.array([0, 50, 100, 150]) * 1_000_000})()
    seeds = np.array([[3, 0.05, 10.0, 20.0], [4, 0.0, 1.0, 2.0]])
    rows = zero_motion_tracker(seq, "zero", seeds, 10_000_000)
    r3 = rows[rows[:, 0] == 3]
    assert np.allclose(r3[:, 1], [0.05, 0.1, 0.15]) and np.allclose(r3[:, 2:], [10, 20])
    assert (rows[:, 0] == 4).sum() == 4


@pytest.mark.data
def test_frame_only_modes_on_real_ec_frames_without_events(shared_data, tmp_path, capsys):
    from blinktrack_ros.cli import main

    data = shared_data / "ec_frames"
    out = tmp_path / "b"
    assert main(["benchmark", str(data), "--modes", "klt,zero", "--out", str(out),
                 "--no-render", "--klt-default"]) == 0
    results = json.loads((out / "results.json").read_text())
    assert set(results["klt"]["sequences"]) == {"boxes_translation_330_410",
                                                "shapes_translation_8_88"}
    # real frames, official protocol: KLT follows the features, standing still does not
    assert results["klt"]["mean"]["feature_age"] > results["zero"]["mean"]["feature_age"] + 0.3
    assert "klt FA" in capsys.readouterr().out
    # event modes still demand an events file, with a clear message
    assert main(["benchmark", str(data), "--modes", "e", "--out", str(tmp_path / "c")]) == 2


def test_shipped_klt_settings_were_tuned_off_the_test_seeds():
    from blinktrack_ros.eval.klt_tuning import DEFAULT_FILE, GRID, load_klt_configs
    from blinktrack_ros.synth.commands import SUITE_SEED
    from blinktrack_ros.synth.config import SUITES
    from blinktrack_ros.tracking.klt import KltConfig

    record = json.loads(DEFAULT_FILE.read_text())
    assert record["tune_seed"] != SUITE_SEED
    configs = load_klt_configs(DEFAULT_FILE)
    assert set(configs) == set(SUITES["challenge"])
    for name, cfg in configs.items():
        entry = record["presets"][name]
        assert isinstance(cfg, KltConfig)
        # the best of the grid, and never worse than the defaults on the tuning seeds
        assert entry["best_feature_age"] == max(s["feature_age"] for s in entry["scores"])
        assert entry["best_feature_age"] >= entry["default_feature_age"]
        assert len(entry["scores"]) == int(np.prod([len(v) for v in GRID.values()]))
    assert load_klt_configs(None) == {}


def test_synth_suite_writes_every_preset(tmp_path):
    from blinktrack_ros.bag.sequence import discover_bags
    from blinktrack_ros.cli import main
    from blinktrack_ros.synth.config import SUITES

    assert main(["synth", "--suite", "challenge", "--out", str(tmp_path), "--sequences", "1",
                 "--duration", "0.05", "--size", "64x48"]) == 0
    names = sorted(b.name for b in discover_bags(tmp_path))
    assert names == sorted(f"{p}_s2027_0000" for p in SUITES["challenge"])
    assert sorted({preset_of(n) for n in names}) == sorted(SUITES["challenge"])
