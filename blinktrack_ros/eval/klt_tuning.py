"""KLT at its best settings per preset, tuned on training seeds (never the test seeds).

`blinktrack tune-klt --out config/klt_tuned.json` generates, for every preset of the challenge
suite, a few sequences from the *tuning* seed stream (`sequence_seed(TUNE_SEED, i, preset)`,
training-split textures; the suite uses `SUITE_SEED` and test-split textures), runs the
frames-only `klt` mode with every setting of a small grid (window, pyramid levels,
forward-backward gate), and keeps per preset the setting with the highest mean feature age
(ties: FA@5px). The file records the grid, the seeds and every score, and
`blinktrack benchmark` loads it (`--klt-tuned`).
"""

from __future__ import annotations

from dataclasses import asdict
import itertools
import json
from pathlib import Path

import numpy as np

TUNE_SEED = 1
GRID = {"win_size": (15, 21, 31), "max_level": (2, 3, 4), "fb_max_px": (1.0, 2.0, 4.0)}
DEFAULT_FILE = Path(__file__).resolve().parents[2] / "config" / "klt_tuned.json"


def load_klt_configs(path: str | Path | None = DEFAULT_FILE) -> dict:
    """preset -> KltConfig from a tuning file ({} when path is None or missing)."""
    from blinktrack_ros.tracking.klt import KltConfig

    if path is None or not Path(path).is_file():
        return {}
    data = json.loads(Path(path).read_text())
    return {name: KltConfig(**entry["best"]) for name, entry in data["presets"].items()}


def tune(presets: tuple[str, ...], n_sequences: int = 3, duration_s: float = 0.6,
         progress: bool = True) -> dict:
    """Grid-search KLT per preset on tuning seeds; returns the JSON-ready record."""
    import tempfile
    from types import SimpleNamespace

    from tqdm import tqdm

    from blinktrack_ros.eval.benchmark import gt_seeds
    from blinktrack_ros.eval.evaluate import sequence_metrics
    from blinktrack_ros.eval.tracker import pipeline_tracker
    from blinktrack_ros.synth.commands import sequence_seed
    from blinktrack_ros.synth.config import preset
    from blinktrack_ros.synth.groundtruth import write_gt_txt
    from blinktrack_ros.synth.sequence import generate_sequence
    from blinktrack_ros.synth.textures import sample_textures
    from blinktrack_ros.tracking.klt import KltConfig

    grid = [dict(zip(GRID, v)) for v in itertools.product(*GRID.values())]
    record = {"method": __doc__.strip().splitlines()[0], "tune_seed": TUNE_SEED,
              "n_sequences": n_sequences, "duration_s": duration_s, "grid": GRID,
              "score": "mean feature_age (reference protocol), ties by age_5",
              "presets": {}}
    for name in presets:
        config = preset(name, duration_s=duration_s)
        seqs = []
        for i in tqdm(range(n_sequences), desc=f"{name}: sequences", disable=not progress):
            s = sequence_seed(TUNE_SEED, i, name)
            seq = generate_sequence(config, s, sample_textures(s, "train"))
            with tempfile.TemporaryDirectory() as tmp:
                write_gt_txt(seq.gt, Path(tmp) / "g.txt")
                gt = np.loadtxt(Path(tmp) / "g.txt", ndmin=2)
            seqs.append(SimpleNamespace(name=f"{name}_s{TUNE_SEED}_{i:04d}",
                                        frames=list(seq.frames),
                                        frame_times_ns=seq.frame_times_ns, events=seq.events,
                                        gt=gt))
        scores = []
        for params in tqdm(grid, desc=f"{name}: grid", disable=not progress):
            tracker = pipeline_tracker(klt_configs={"*": KltConfig(**params)})
            fa, a5 = [], []
            for seq in seqs:
                pred = tracker(seq, "klt", gt_seeds(seq.gt), 10_000_000)
                m = sequence_metrics(seq.name, pred, seq.gt, image_size=(240, 180))
                fa.append(m["feature_age"])
                a5.append(m["age_5"])
            scores.append({"params": params, "feature_age": float(np.mean(fa)),
                           "age_5": float(np.mean(a5))})
        best = max(scores, key=lambda r: (r["feature_age"], r["age_5"]))
        default = next(r for r in scores if all(
            r["params"][k] == getattr(KltConfig(), k) for k in GRID))
        record["presets"][name] = {
            "best": {**asdict(KltConfig()), **best["params"]},
            "best_feature_age": best["feature_age"], "best_age_5": best["age_5"],
            "default_feature_age": default["feature_age"], "scores": scores}
    return record
