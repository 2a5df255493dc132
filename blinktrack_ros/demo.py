"""`blinktrack demo`: the main job on a built-in default, with nothing but the package.

Generates a short synthetic sequence with exact ground truth (an occlusion preset), tracks it
with the shipped weights in every mode, and writes into ./blinktrack_demo/:

    data/<seq>/, data/<seq>.gt.txt    the input bag (events, frames, camera info, GT) and its GT
    tracks.mcap/                      the fused tracks of the main mode (ei) as a ROS 2 bag
    <mode>/<seq>.txt                  tracks of every mode as `id t x y` rows
    results.md / .csv / .json         the metrics table (feature age, delta_vis/occ/all, ...)
    age_vs_threshold.png, bars_*.png  plots
    videos/<seq>_<mode>.gif           annotated tracks over the frames
"""

from __future__ import annotations

import argparse
from pathlib import Path
import shutil
from types import SimpleNamespace

ALL_MODES = ("e", "i", "ei", "ei-naive", "klt")


def _available_modes(modes: tuple[str, ...]) -> tuple[tuple[str, ...], list[str]]:
    """Modes whose shipped weights exist, and notes about the ones left out."""
    from blinktrack_ros.tracking.build import (
        DEFAULT_EVENT_WEIGHTS,
        DEFAULT_IMAGE_WEIGHTS,
        resolve_weights,
    )
    from blinktrack_ros.tracking.pipeline import Mode

    notes, keep = [], []
    for name in modes:
        mode = Mode(name)
        missing = []
        for needed, default in ((mode.uses_events, DEFAULT_EVENT_WEIGHTS),
                                (mode.uses_image_net, DEFAULT_IMAGE_WEIGHTS)):
            if needed:
                try:
                    resolve_weights(None, default)
                except FileNotFoundError:
                    missing.append(default)
        if missing:
            notes.append(f"mode {name} skipped: no shipped {', '.join(missing)}")
        else:
            keep.append(name)
    return tuple(keep), notes


def run_demo(args: argparse.Namespace) -> int:
    """Generate, track in every mode, evaluate, render; print where everything is."""
    from blinktrack_ros.bag.replay import replay
    from blinktrack_ros.bag.sequence import load_bag_sequence
    from blinktrack_ros.cli import UsageError
    from blinktrack_ros.eval.benchmark import BenchmarkConfig, run_benchmark
    from blinktrack_ros.eval.report import sequence_table
    from blinktrack_ros.eval.tracker import pipeline_tracker
    from blinktrack_ros.synth.bagout import write_sequence_bag
    from blinktrack_ros.synth.config import preset
    from blinktrack_ros.synth.sequence import generate_sequence

    out = Path(args.out)
    if out.exists():
        if not args.force:
            raise UsageError(f"{out} exists: pass --force to overwrite it, or --out NEW_DIR")
        shutil.rmtree(out)
    modes, notes = _available_modes(ALL_MODES)
    for note in notes:
        print(f"note: {note} (train with `blinktrack train`, or pass weights to "
              "`blinktrack benchmark`)")
    print(f"1/3 generating a {args.duration:.1f} s synthetic sequence (preset {args.preset})")
    seq = generate_sequence(preset(args.preset, duration_s=args.duration), seed=args.seed,
                            progress=True)
    bag = out / "data" / f"{args.preset}_{args.seed:04d}"
    write_sequence_bag(seq, bag, event_msg="dvs")
    print(f"2/3 tracking in modes {', '.join(modes)} and evaluating against the ground truth")
    sequence = load_bag_sequence(bag)
    results = run_benchmark([sequence], pipeline_tracker(), out,
                            BenchmarkConfig(modes=modes, render=True), progress=False)
    main_mode = "ei" if "ei" in modes else modes[0]
    print(f"3/3 replaying the bag through the node logic (mode {main_mode}) into a ROS 2 bag")
    seeds = out / main_mode / f"{sequence.name}.seeds.txt"
    _write_seeds(sequence.gt, seeds)
    stats = replay(SimpleNamespace(
        bag=str(bag), out=str(out / "tracks.mcap"), tracks_txt=None, mode=main_mode,
        seeds=str(seeds), target_count=64, event_topic=None, image_topic=None, window_ms=10.0,
        event_weights=None, image_weights=None, untrained=False, device="cpu",
        frame_id="camera", quiet=True))
    for mode in modes:
        print(f"\n## mode {mode}")
        print(sequence_table(results[mode]))
    print(f"\nreplay: {stats['bag_s']:.2f} s of data in {stats['wall_s']:.2f} s "
          f"({stats['realtime_factor']:.2f}x real time)")
    print(f"\nwritten to {out.resolve()}/:")
    for name, what in (("results.md", "metrics table"), ("age_vs_threshold.png", "plot"),
                       ("videos/", "annotated GIFs per mode"), ("tracks.mcap/", "tracks bag"),
                       (f"{main_mode}/", "tracks as id t x y rows"), ("data/", "input bag")):
        print(f"  {name:<22} {what}")
    return 0


def _write_seeds(gt, path: Path) -> None:
    import numpy as np

    from blinktrack_ros.eval.benchmark import gt_seeds

    path.parent.mkdir(parents=True, exist_ok=True)
    np.savetxt(path, gt_seeds(gt), fmt=["%d", "%.9f", "%.4f", "%.4f"])


def register(sub: argparse._SubParsersAction) -> None:
    """Add `blinktrack demo`."""
    p = sub.add_parser("demo", help="the main job on a built-in default: synthesize, track in "
                                    "every mode, evaluate, plot, render (./blinktrack_demo/)")
    p.add_argument("--out", default="blinktrack_demo", help="output folder")
    p.add_argument("--preset", default="occlusion", help="synthetic preset")
    p.add_argument("--duration", type=float, default=1.0, help="sequence length in seconds")
    p.add_argument("--seed", type=int, default=2026, help="generator seed")
    p.add_argument("--force", action="store_true", help="overwrite an existing output folder")
    p.set_defaults(func=run_demo)
