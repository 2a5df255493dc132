"""`blinktrack eval`: feature-age metrics of prediction files against ground truth."""

from __future__ import annotations

import argparse
import json

from blinktrack_ros.cli import UsageError

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
