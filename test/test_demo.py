"""`blinktrack demo`: the README's first command, on a short sequence."""

from __future__ import annotations

import json

from blinktrack_ros.cli import main


def test_demo_writes_everything_it_announces(tmp_path, capsys):
    out = tmp_path / "demo"
    assert main(["demo", "--out", str(out), "--duration", "0.3"]) == 0
    printed = capsys.readouterr().out
    assert str(out.resolve()) in printed
    results = json.loads((out / "results.json").read_text())
    assert "klt" in results
    for mode, result in results.items():
        assert 0.0 <= result["mean"]["feature_age"] <= 1.0, mode
        assert (out / "videos" / f"occlusion_2026_{mode}.gif").is_file()
    for name in ("results.md", "age_vs_threshold.png", "tracks.mcap/metadata.yaml",
                 "data/occlusion_2026.gt.txt"):
        assert (out / name).is_file(), name
    assert main(["demo", "--out", str(out)]) == 2  # exists: refuses without --force
    assert "--force" in capsys.readouterr().err
