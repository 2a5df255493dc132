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


def test_occlusion_crossings_follow_the_visibility_column():
    import numpy as np

    from blinktrack_ros.demo import occlusion_crossings

    def track(i, vis):
        return [[i, 0.01 * k, 10.0, 20.0, v] for k, v in enumerate(vis)]

    gt = np.array(track(1, [1, 1, 0, 0, 1]) + track(2, [1, 1, 1, 1, 1])
                  + track(3, [1, 0, 0, 0, 0]) + track(4, [0, 0, 1, 0, 1])
                  + track(5, [0, 0, 1, 1, 1]), float)
    assert occlusion_crossings(gt) == [1, 4]  # hidden after being seen, then seen again
    assert occlusion_crossings(gt[:, :4]) == []  # no visibility column: nothing to say


def test_readme_gif_is_small_and_reproducible(tmp_path, capsys):
    from PIL import Image

    from blinktrack_ros.synth.config import preset

    first, second = tmp_path / "a.gif", tmp_path / "b.gif"
    for out in (first, second):
        assert main(["demo", "--readme-gif", str(out), "--duration", "0.2"]) == 0
    assert first.read_bytes() == second.read_bytes()  # same command, same file
    with Image.open(first) as gif:
        from blinktrack_ros.demo import README_GIF
        from blinktrack_ros.synth.sequence import generate_sequence

        config = preset(README_GIF["preset"], duration_s=0.2)
        # one GIF frame per camera frame (the sensor presets draw their frame rate)
        assert gif.n_frames == len(generate_sequence(config, README_GIF["seed"]).frames)
        assert gif.size == (2 * config.width, 2 * config.height)
    assert first.stat().st_size < 2_000_000
    assert str(first) in capsys.readouterr().out
