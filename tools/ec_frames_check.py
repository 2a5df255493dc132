"""Frame-only modes on the real EC frames (validation only, never trained on), official
protocol: `python tools/ec_frames_check.py OUT MODES [IMAGE_WEIGHTS]`.

`blinktrack benchmark` needs an events file per sequence; `../shared/data/ec_frames` has
frames and ground truth only, so this runs the same benchmark runner with an empty event
stream (frame-only modes: klt, i).
"""

from __future__ import annotations

from dataclasses import dataclass
import json
from pathlib import Path
import sys

import numpy as np

DATA = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "ec_frames"


@dataclass
class FrameSequence:
    name: str
    frames: list
    frame_times_ns: np.ndarray
    events: object
    gt: np.ndarray | None


def sequences(root: Path = DATA) -> list[FrameSequence]:
    from blinktrack_ros.eval.ec_eds import load_frames
    from blinktrack_ros.eval.tracks_io import read_tracks
    from blinktrack_ros.events.batch import EventBatch

    out = []
    for folder in sorted(p for p in root.iterdir() if (p / "images.txt").is_file()):
        frames, times = load_frames(folder)
        h, w = frames[0].shape[:2]
        empty = EventBatch(np.zeros(0, np.uint16), np.zeros(0, np.uint16),
                           np.zeros(0, np.int64), np.zeros(0, np.uint8), w, h)
        gt = read_tracks(root / "gt_tracks" / f"{folder.name}.gt.txt")
        out.append(FrameSequence(folder.name, frames, times, empty, gt))
    return out


def main() -> int:
    from blinktrack_ros.eval.benchmark import BenchmarkConfig, run_benchmark
    from blinktrack_ros.eval.tracker import pipeline_tracker

    out, modes = sys.argv[1], tuple(sys.argv[2].split(","))
    image = sys.argv[3] if len(sys.argv) > 3 else None
    tracker = pipeline_tracker(None, image, False, "cpu")
    res = run_benchmark(sequences(), tracker, out, BenchmarkConfig(modes=modes, render=False),
                        progress=False)
    print(json.dumps({m: {k: r["mean"][k] for k in ("feature_age", "inlier_ratio")
                          if k in r["mean"]} for m, r in res.items()}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
