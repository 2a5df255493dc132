"""The benchmark runner's library side: sequences -> tracker per mode -> metrics -> outputs.

`blinktrack benchmark` is a thin layer over `run_benchmark`: it finds sequences
(`discover_sequences` + `ec_eds.load_sequence`, or synthetic sequences exposing the same
attributes), wraps the tracking pipeline as a `TrackerFn`, and calls `run_benchmark`, which
writes under `out_dir`:

    <mode>/<seq>.txt            predicted tracks, rows `id t x y [vis]`
    results.md, results.csv     per mode and sequence, with means (`report.write_report`)
    results.json                {mode: {"sequences": ..., "mean": ...}}
    age_vs_threshold.png        feature age against threshold, per mode
    bars_<metric>.png           per-sequence bars of EFA, FA and TE@5px
    videos/<seq>_<mode>.gif     tracks over the frames (occluded hollow/dashed), MP4 if possible
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
import json
from pathlib import Path
from typing import Protocol

import numpy as np

from blinktrack_ros.eval.ec_eds import is_sequence_folder
from blinktrack_ros.eval.evaluate import EDS_SIZE, known_image_size, sequence_metrics, summarize
from blinktrack_ros.eval.report import json_safe, write_report
from blinktrack_ros.eval.tracks_io import write_tracks

MODES = ("e", "i", "ei", "ei-naive", "klt")
EC_WINDOW_S = 0.010
EDS_WINDOW_S = 0.005
BAR_KEYS = ("expected_feature_age", "feature_age", "te_5")


class BenchmarkSequence(Protocol):
    """What the runner needs of a sequence (`ec_eds.EcEdsSequence` has it)."""

    name: str
    frames: list[np.ndarray]  # (H, W) uint8
    frame_times_ns: np.ndarray  # (F,) int64
    events: object  # EventBatch, t in ns
    gt: np.ndarray | None  # (K, 4|5) rows id t x y [vis], t in s


# tracker(sequence, mode, seeds (N, 4) rows `id t0 x y`, event window in ns)
#   -> (M, 4|5) rows `id t x y [vis]` with t in seconds on the GT clock
TrackerFn = Callable[[BenchmarkSequence, str, np.ndarray, int], np.ndarray]


@dataclass(frozen=True)
class BenchmarkConfig:
    """Benchmark options; `event_window_s=None` means 10 ms for EC, 5 ms for EDS."""

    modes: tuple[str, ...] = MODES
    event_window_s: float | None = None
    corrected: bool = False
    image_size: tuple[int, int] | None = None
    render: bool = True
    render_fps: float = 10.0


def default_event_window_s(sequence: BenchmarkSequence) -> float:
    """10 ms for EC (and anything else), 5 ms for EDS (recognised by name or 640x480 frames)."""
    size = known_image_size(sequence.name)
    if size is None and sequence.frames:
        size = sequence.frames[0].shape[1::-1]
    return EDS_WINDOW_S if tuple(size or ()) == EDS_SIZE else EC_WINDOW_S


def gt_seeds(gt: np.ndarray) -> np.ndarray:
    """Where tracks start: the earliest GT row of every id, as (N, 4) rows `id t0 x y`."""
    order = np.lexsort((gt[:, 1], gt[:, 0]))
    ids, first = np.unique(gt[order, 0], return_index=True)
    return gt[order][first, :4].copy()


def _frame_size(sequence: BenchmarkSequence) -> tuple[int, int] | None:
    """(width, height) of the sequence's frames, for the delta metrics."""
    return (int(sequence.frames[0].shape[1]), int(sequence.frames[0].shape[0])) \
        if len(sequence.frames) else None


def discover_sequences(data: str | Path) -> list[Path]:
    """DATA itself when it is a sub-sequence folder, else its sub-sequence children (sorted).

    Raises:
        FileNotFoundError: nothing that looks like a sequence (message says what is expected).
    """
    data = Path(data)
    if not data.is_dir():
        raise FileNotFoundError(f"data folder not found: {data}")
    if is_sequence_folder(data):
        return [data]
    found = sorted(p for p in data.iterdir() if p.is_dir() and is_sequence_folder(p))
    if not found:
        raise FileNotFoundError(
            f"{data}: no sequence folders (expected images_corrected/ or images/ with "
            "images.txt or images_timestamps.txt, events as text or h5, gt_tracks/)")
    return found


def _check_prediction(pred: np.ndarray, name: str, mode: str) -> np.ndarray:
    pred = np.asarray(pred, dtype=np.float64)
    if pred.ndim != 2 or pred.shape[1] not in (4, 5) or pred.shape[0] == 0:
        raise ValueError(f"tracker returned {pred.shape} for {name} / {mode}; "
                         "expected non-empty rows `id t x y [vis]`")
    return pred


def render_prediction(sequence: BenchmarkSequence, pred: np.ndarray, out_base: Path,
                      fps: float = 10.0) -> list[Path]:
    """Annotated GIF (and MP4 when possible) of predicted tracks and GT over the frames."""
    from blinktrack_ros.eval.render import render_tracks, write_animation

    images = render_tracks(sequence.frames, sequence.frame_times_ns, pred, sequence.gt,
                           progress=len(sequence.frames) > 100)
    return write_animation(images, out_base, fps=fps)


def write_outputs(results: dict[str, dict], out_dir: str | Path) -> list[Path]:
    """Report (markdown, CSV, JSON) and plots of finished results; returns the paths."""
    from blinktrack_ros.eval.plots import plot_age_vs_threshold, plot_sequence_bars

    out_dir = Path(out_dir)
    paths = list(write_report(results, out_dir))
    json_path = out_dir / "results.json"
    json_path.write_text(json.dumps(json_safe(results), indent=1))
    paths.append(json_path)
    paths.append(plot_age_vs_threshold(results, out_dir / "age_vs_threshold.png"))
    for key in BAR_KEYS:
        paths.append(plot_sequence_bars(results, out_dir / f"bars_{key}.png", key))
    return paths


def run_benchmark(sequences: Iterable[BenchmarkSequence], tracker: TrackerFn,
                  out_dir: str | Path, config: BenchmarkConfig = BenchmarkConfig(),
                  progress: bool = True) -> dict[str, dict]:
    """Run the tracker per mode on every sequence, evaluate, write all outputs.

    Sequences are consumed one at a time (pass a generator to keep one in memory).

    Returns:
        mode -> `{"sequences": {name: metrics}, "mean": metrics}`.

    Raises:
        ValueError: a sequence without ground truth, or a malformed tracker output.
    """
    from tqdm import tqdm

    out_dir = Path(out_dir)
    per_mode: dict[str, dict[str, dict]] = {m: {} for m in config.modes}
    for seq in tqdm(sequences, desc="sequences", unit="seq", disable=not progress):
        if seq.gt is None:
            raise ValueError(f"{seq.name}: no ground truth (gt_tracks/<seq>.gt.txt)")
        window_s = config.event_window_s or default_event_window_s(seq)
        seeds = gt_seeds(seq.gt)
        for mode in config.modes:
            pred = _check_prediction(
                tracker(seq, mode, seeds, int(round(window_s * 1e9))), seq.name, mode)
            write_tracks(out_dir / mode / f"{seq.name}.txt", pred)
            per_mode[mode][seq.name] = sequence_metrics(
                seq.name, pred, seq.gt, corrected=config.corrected,
                image_size=config.image_size or _frame_size(seq))
            if config.render:
                render_prediction(seq, pred, out_dir / "videos" / f"{seq.name}_{mode}",
                                  config.render_fps)
    results = {mode: summarize(seqs) for mode, seqs in per_mode.items()}
    write_outputs(results, out_dir)
    return results


# ---------------------------------------------------------------------------------------------
# "Do the events help?": per-preset means, differences against KLT, the zero-motion floor.
# ---------------------------------------------------------------------------------------------

ZERO_MODE = "zero"  # every track stays at its seed: the floor a tracker must clear
COMPARE_KEYS = ("feature_age", "age_5", "delta_occ")
COMPARE_PAIRS = (("ei", "klt"), ("e-klt", "klt"), ("e", "klt"), ("i", "klt"),
                 ("ei+s", "klt"), ("e-klt+s", "klt"), ("i+s", "klt"), ("klt+s", "klt"),
                 ("e-klt+s", "klt+s"), ("ei+s", "klt+s"), ("ei", "klt+p"), ("e-klt", "klt+p"),
                 ("ei", "i+p"), ("i+p", "klt+p"))


def zero_motion_tracker(seq: BenchmarkSequence, mode: str, seeds: np.ndarray,
                        window_ns: int) -> np.ndarray:
    """TrackerFn of the zero-motion floor: each seed reported unmoved at every frame time."""
    times = np.asarray(seq.frame_times_ns, np.float64) * 1e-9
    rows = []
    for fid, t0, x, y in np.asarray(seeds, np.float64):
        t = np.r_[t0, times[times > t0 + 1e-9]]
        rows.append(np.column_stack([np.full(t.size, fid), t, np.full(t.size, x),
                                     np.full(t.size, y)]))
    return np.concatenate(rows) if rows else np.zeros((0, 4))


def with_zero_motion(tracker: TrackerFn) -> TrackerFn:
    """tracker, with mode `zero` answered by `zero_motion_tracker`."""

    def track(seq, mode, seeds, window_ns):
        if mode == ZERO_MODE:
            return zero_motion_tracker(seq, mode, seeds, window_ns)
        return tracker(seq, mode, seeds, window_ns)

    return track


def preset_of(name: str) -> str:
    """The preset a sequence name belongs to: `davis_s2027_0001` -> `davis`; else the name."""
    import re

    m = re.match(r"^(.*)_s\d+(_\d+)?$", name)
    return m.group(1) if m else name


def preset_means(results: dict[str, dict]) -> dict[str, dict[str, dict]]:
    """preset -> mode -> mean metrics over that preset's sequences (`evaluate.summarize`)."""
    from blinktrack_ros.eval.metrics import mean_metrics

    groups: dict[str, dict[str, dict[str, dict]]] = {}
    for mode, result in results.items():
        for name, metrics in result["sequences"].items():
            groups.setdefault(preset_of(name), {}).setdefault(mode, {})[name] = metrics
    return {p: {m: mean_metrics(seqs) for m, seqs in modes.items()}
            for p, modes in groups.items()}


def comparison_rows(results: dict[str, dict], keys=COMPARE_KEYS,
                    pairs=COMPARE_PAIRS) -> dict[str, dict[str, float]]:
    """One row per preset (and `summary` = mean of the presets' means, each preset weighted
    equally): every mode's value of every key, the differences `a - b` of the pairs present,
    and `zero` (the floor) where it ran.

    Column names: `<mode>:<key>` and `<a> - <b>:<key>` (e.g. `ei - klt:feature_age`; the
    spaces keep the difference e - klt apart from the mode e-klt).
    """
    by_preset = preset_means(results)
    rows: dict[str, dict[str, float]] = {}
    for preset, modes in by_preset.items():
        row = {}
        for mode, mean in modes.items():
            for key in keys:
                row[f"{mode}:{key}"] = float(mean.get(key, float("nan")))
        for a, b in pairs:
            if a in modes and b in modes:
                for key in keys:
                    row[f"{a} - {b}:{key}"] = row[f"{a}:{key}"] - row[f"{b}:{key}"]
        rows[preset] = row
    if len(rows) > 1:
        cols = dict.fromkeys(c for r in rows.values() for c in r)
        def finite_mean(values: list[float]) -> float:
            good = [v for v in values if np.isfinite(v)]
            return float(np.mean(good)) if good else float("nan")

        rows["summary"] = {c: finite_mean([r.get(c, np.nan) for r in rows.values()])
                           for c in cols}
    return rows


def comparison_markdown(rows: dict[str, dict[str, float]], keys=COMPARE_KEYS) -> str:
    """Two markdown tables: values per mode, then the differences against KLT."""
    from blinktrack_ros.eval.report import COLUMN_TITLES

    out = []
    for kind in ("values", "differences"):
        cols = dict.fromkeys(c for r in rows.values() for c in r
                             if ((" - " in c) == (kind == "differences"))
                             and c.split(":")[1] in keys)
        cols = sorted(cols, key=lambda c: (keys.index(c.split(":")[1]),
                                           list(cols).index(c)))
        if not cols:
            continue
        title = [f"{c.split(':')[0]} {COLUMN_TITLES.get(c.split(':')[1], c.split(':')[1])}"
                 for c in cols]
        lines = ["| preset | " + " | ".join(title) + " |",
                 "|---|" + "|".join("---" for _ in cols) + "|"]
        for name, r in rows.items():
            cells = ["" if c not in r else "n/a" if not np.isfinite(r[c]) else
                     f"{r[c]:+.3f}" if kind == "differences" else f"{r[c]:.3f}" for c in cols]
            lines.append(f"| {name} | " + " | ".join(cells) + " |")
        out.append("\n".join(lines))
    return "\n\n".join(out)


def plot_presets(results: dict[str, dict], out_dir: str | Path,
                 keys=COMPARE_KEYS) -> list[Path]:
    """One PNG per preset: bars of FA, FA@5px and delta_occ per mode (zero floor dashed)."""
    from blinktrack_ros.eval.plots import _pyplot
    from blinktrack_ros.eval.report import COLUMN_TITLES

    plt = _pyplot()
    paths = []
    for preset, modes in preset_means(results).items():
        names = [m for m in modes if m != ZERO_MODE]
        fig, axes = plt.subplots(1, len(keys), figsize=(3.2 * len(keys), 3.2))
        for ax, key in zip(np.atleast_1d(axes), keys):
            vals = [modes[m].get(key, np.nan) for m in names]
            ax.bar(range(len(names)), vals, color=["#4c72b0" if "klt" not in m else "#dd8452"
                                                   for m in names])
            ax.set_xticks(range(len(names)), names, rotation=30)
            if ZERO_MODE in modes and np.isfinite(modes[ZERO_MODE].get(key, np.nan)):
                ax.axhline(modes[ZERO_MODE][key], ls="--", color="k", lw=1,
                           label="zero motion")
                ax.legend(fontsize=7)
            ax.set_title(COLUMN_TITLES.get(key, key))
            ax.set_ylim(0, 1.02)
            ax.grid(axis="y", alpha=0.3)
        n = modes[names[0]]["n_sequences"] if names else 0
        fig.suptitle(f"{preset} ({n} sequences)")
        fig.tight_layout()
        path = Path(out_dir) / f"preset_{preset}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, dpi=100)
        plt.close(fig)
        paths.append(path)
    return paths
