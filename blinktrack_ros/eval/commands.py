"""`blinktrack eval`: feature-age metrics of prediction files against ground truth."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from blinktrack_ros.cli import UsageError
from blinktrack_ros.tracking.build import add_event_runtime_args, event_source_options

EVAL_EPILOG = """\
Files have rows `id t x y` (t in s, x y in px); ground truth may carry a 5th column `vis`
(1 visible, 0 occluded), which adds the delta metrics of BlinkTrack (delta_vis, delta_occ,
delta_all). Folders are matched by sequence name: `<seq>.txt` with `<seq>.gt.txt`, tolerating
the frame-range suffix of sub-sequences (`shapes_6dof_485_565.txt` vs `shapes_6dof.gt.txt`) and
the numeric prefix of EDS ground truth (`01_peanuts_light.gt.txt`).

By default the metrics reproduce the public reference benchmark script exactly, quirks
included, so numbers compare with published tables:
  * predicted times are shifted so that the first prediction row has the first GT row's time;
  * GT is cropped to the predicted span; tracks with fewer than 2 GT rows are skipped;
  * the age ends one sample before the last sample within the threshold, and a track whose
    second evaluated sample fails scores 0 (an index shift); the tracking error skips the
    first evaluated sample.
--corrected fixes the index shift (age up to the last sample within the threshold; error over
all evaluated samples up to it). --truncate-pred truncates predicted x, y to integers first,
as the reference trackers write their files (`%i`): use it to compare float predictions with
numbers computed from such files.
"""


def _parse_size(text: str | None) -> tuple[int, int] | None:
    if text is None:
        return None
    try:
        w, h = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise UsageError(f"--size must look like 240x180, got {text!r}") from None
    if w <= 0 or h <= 0:
        raise UsageError(f"--size must be positive, got {text!r}")
    return w, h


def run_eval(args: argparse.Namespace) -> int:
    """Evaluate, then print a per-sequence table with the mean, or JSON."""
    from blinktrack_ros.eval.evaluate import evaluate_paths
    from blinktrack_ros.eval.report import json_safe, sequence_table

    try:
        result = evaluate_paths(args.pred, args.gt, corrected=args.corrected,
                                truncate_pred=args.truncate_pred,
                                image_size=_parse_size(args.size), progress=not args.json)
    except (FileNotFoundError, ValueError) as exc:
        raise UsageError(str(exc)) from None
    if args.json:
        print(json.dumps(json_safe(result)))
        return 0
    variant = "corrected" if args.corrected else "reference protocol"
    if args.truncate_pred:
        variant += ", predictions truncated to integers"
    print(f"# feature age ({variant}; thresholds 1..31 px)")
    print(sequence_table(result))
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    """Add `blinktrack eval`."""
    p = sub.add_parser(
        "eval", help="feature-age metrics of predicted tracks against ground truth (EC/EDS)",
        description="Feature age, expected feature age, inlier ratio, age and tracking error "
                    "at 5 px (and delta metrics with visibility), per sequence and mean.",
        epilog=EVAL_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--pred", required=True, help="prediction file or folder (rows id t x y)")
    p.add_argument("--gt", required=True, help="ground-truth file or folder (id t x y [vis])")
    p.add_argument("--json", action="store_true",
                   help='print {"sequences": {name: metrics}, "mean": metrics} as JSON')
    p.add_argument("--corrected", action="store_true",
                   help="fix the reference's index shift (not comparable with published tables)")
    p.add_argument("--truncate-pred", action="store_true",
                   help="truncate predicted x, y to integers, as reference trackers' files")
    p.add_argument("--size", metavar="WxH",
                   help="image size for the delta metrics (default: EC 240x180, EDS 640x480 "
                        "recognised by name)")
    p.set_defaults(func=run_eval)
    _register_benchmark(sub)


def load_benchmark_sequences(data: str, require_events: bool = True):
    """Synthetic bags with `<name>.gt.txt`, or EC/EDS sub-sequence folders, one at a time.

    require_events=False (only frame-only modes asked): EC/EDS folders without events load.
    """
    from pathlib import Path

    from blinktrack_ros.bag.sequence import discover_bags, load_bag_sequence
    from blinktrack_ros.eval.benchmark import discover_sequences
    from blinktrack_ros.eval.ec_eds import load_sequence

    path = Path(data)
    if not path.exists():
        raise UsageError(f"{data}: no such folder (make one with `blinktrack synth --out "
                         f"{data} --preset benchmark`, or give an EC/EDS sub-sequence folder)")
    bags = discover_bags(path) if path.is_dir() else []
    if bags:
        return len(bags), (load_bag_sequence(b) for b in bags)
    try:
        folders = discover_sequences(path)
    except FileNotFoundError as exc:
        raise UsageError(f"{exc}; or synthetic bags with <name>.gt.txt beside them") from None
    if require_events:
        from blinktrack_ros.eval.ec_eds import has_events

        bare = [f.name for f in folders if not has_events(f)]
        if bare:
            raise UsageError(f"{bare[0]} has no events file (events_corrected.txt, events.txt "
                             "or .h5): score the frame-only modes with --modes i,klt,zero")
    return len(folders), (load_sequence(f, require_events=require_events) for f in folders)


def run_benchmark_command(args: argparse.Namespace) -> int:
    """Track every sequence in every mode, evaluate, write tables, plots and videos."""
    from blinktrack_ros.eval.benchmark import (
        ZERO_MODE,
        BenchmarkConfig,
        comparison_markdown,
        comparison_rows,
        plot_presets,
        run_benchmark,
        with_zero_motion,
    )
    from blinktrack_ros.eval.klt_tuning import load_klt_configs
    from blinktrack_ros.eval.report import sequence_table
    from blinktrack_ros.eval.tracker import SUFFIXES, pipeline_tracker, split_suffix
    from blinktrack_ros.tracking.pipeline import Mode

    modes = tuple(m.strip() for m in args.modes.split(",") if m.strip())
    # dv: dv-processing's tracker (baselines extra); zero: every track stays at its seed;
    # <mode>+s: the mode's tracks RTS-smoothed offline; <mode>+p: the causal prediction added
    # every event window between updates (what a live node publishes); <mode>+f: smoothed
    # with a lag of one frame (node.publish_refined)
    known = ({m.value for m in Mode} | {m.value + s for m in Mode for s in SUFFIXES}
             | {"dv", ZERO_MODE})
    bad = [m for m in modes if m not in known]
    if bad or not modes:
        raise UsageError(f"unknown modes {bad}; choose from {sorted(known)} (default "
                         "e,i,ei,klt,e-klt,zero)")
    pipeline_modes = {x.value for x in Mode}
    needs_events = any(m == "dv" or (split_suffix(m)[0] in pipeline_modes
                                     and Mode(split_suffix(m)[0]).uses_events)
                       for m in modes)
    try:
        klt_configs = {} if args.klt_default else load_klt_configs(args.klt_tuned)
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise UsageError(f"--klt-tuned {args.klt_tuned}: {exc}") from None
    tracker = with_zero_motion(pipeline_tracker(
        args.event_weights, args.image_weights, args.untrained, args.device,
        klt_configs=klt_configs,
        event_source=event_source_options(args.event_runtime, args.event_onnx)))
    if "dv" in modes:
        from blinktrack_ros.eval.dv_baseline import with_dv

        tracker = with_dv(tracker)
    n, sequences = load_benchmark_sequences(args.data, require_events=needs_events)
    config = BenchmarkConfig(modes=modes, corrected=args.corrected, render=not args.no_render,
                             event_window_s=args.window_ms * 1e-3 if args.window_ms else None)
    try:
        results = run_benchmark(sequences, tracker, args.out, config)
    except FileNotFoundError as exc:
        raise UsageError(str(exc)) from None
    for mode, result in results.items():
        print(f"\n## mode {mode} ({n} sequences)")
        print(sequence_table(result))
    rows = comparison_rows(results)
    table = comparison_markdown(rows)
    tuned = sorted(klt_configs) if klt_configs else "defaults"
    print(f"\n## per preset: do the events help? (KLT settings: {tuned}; zero = every "
          "track stays at its seed)\n")
    print(table)
    out = Path(args.out)
    (out / "comparison.md").write_text(table + "\n")
    (out / "comparison.json").write_text(json.dumps(rows, indent=1))
    plot_presets(results, out)
    print(f"\nwrote {args.out}/results.md, results.csv, results.json, comparison.md/.json, "
          "preset_<name>.png, plots and videos/")
    return 0


def _register_benchmark(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "benchmark", help="track and evaluate sequences in several modes (tables, plots, GIFs)",
        description="DATA: a folder of synthetic bags with <name>.gt.txt beside them "
                    "(`blinktrack synth --suite challenge`, or --preset NAME), or an EC/EDS "
                    "sub-sequence folder (or a folder of them; without events: frame-only "
                    "modes). Tracks start from the ground truth at t0. Prints per preset the "
                    "modes' FA, FA@5px and delta_occ, their differences against klt and the "
                    "zero-motion floor (comparison.md, preset_<name>.png).")
    p.add_argument("data", help="dataset folder")
    p.add_argument("--modes", default="e,i,ei,klt,e-klt,zero",
                   help="comma-separated modes: e, i, ei, ei-naive, klt, e-klt, zero (every "
                        "track stays at its seed: the floor), dv "
                        "(dv-processing's event+frame LK tracker: pip install dv-processing); "
                        "a pipeline mode with the suffix +s (ei+s, e-klt+s, klt+s, ...) "
                        "reports its tracks smoothed offline (Rauch-Tung-Striebel: each "
                        "position also uses the later observations; not what a live node "
                        "publishes); with +p (klt+p, i+p) the causal Kalman prediction is "
                        "added every event window between updates: what a live node "
                        "publishing at the window rate gives (frame-only modes otherwise write "
                        "rows at frames only, which the protocol interpolates using the next "
                        "frame); with +f (ei+f, e-klt+f) the tracks smoothed with a lag of one "
                        "frame: each position also uses the observations up to the next frame "
                        "and no later (what node.publish_refined publishes; the information "
                        "that interpolation gives the frame-only modes)")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--window-ms", type=float, default=None,
                   help="event window (default 10 ms, 5 ms for EDS)")
    p.add_argument("--event-weights", help="event network checkpoint (default: shipped lite)")
    p.add_argument("--image-weights", help="image network checkpoint (default: shipped lite)")
    add_event_runtime_args(p)
    p.add_argument("--untrained", action="store_true",
                   help="random network weights (for tests and ablations)")
    p.add_argument("--device", default="cpu", help="torch device: cpu or cuda")
    p.add_argument("--corrected", action="store_true", help="see `blinktrack eval --help`")
    p.add_argument("--no-render", action="store_true", help="skip the annotated GIFs")
    p.add_argument("--klt-tuned", type=Path, default=None,
                   help="KLT settings per preset (default: the shipped config/klt_tuned.json, "
                        "tuned on training seeds by `blinktrack tune-klt`)")
    p.add_argument("--klt-default", action="store_true",
                   help="KLT with its default settings for every preset")
    p.set_defaults(func=run_benchmark_command)
    t = sub.add_parser(
        "tune-klt", help="tune KLT per preset on training seeds (for a fair benchmark)",
        description="Grid search of the KLT settings per preset of the challenge suite on "
                    "sequences of the tuning seed stream (never the test seeds); writes the "
                    "best setting per preset with every score.")
    t.add_argument("--out", type=Path, required=True, help="JSON file to write")
    t.add_argument("--sequences", type=int, default=3, help="tuning sequences per preset")
    t.add_argument("--duration", type=float, default=0.6, help="seconds per sequence")
    t.add_argument("--presets", default=None,
                   help="comma-separated presets (default: the challenge suite)")
    t.set_defaults(func=_tune_klt)


def _tune_klt(args: argparse.Namespace) -> int:
    from blinktrack_ros.eval.klt_tuning import tune
    from blinktrack_ros.synth.config import PRESETS, SUITES

    presets = tuple(p.strip() for p in args.presets.split(",")) if args.presets \
        else SUITES["challenge"]
    bad = [p for p in presets if p not in PRESETS]
    if bad or args.sequences < 1 or args.duration <= 0:
        raise UsageError(f"unknown presets {bad} or bad --sequences/--duration")
    record = tune(presets, args.sequences, args.duration)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(record, indent=1))
    for name, entry in record["presets"].items():
        best = {k: entry["best"][k] for k in record["grid"]}
        print(f"{name}: best {best} FA {entry['best_feature_age']:.3f} (defaults "
              f"{entry['default_feature_age']:.3f})")
    print(f"wrote {args.out}")
    return 0
