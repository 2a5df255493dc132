"""Real-data check without ground truth: tracks followed through real events against Lucas-Kanade.

On a real recording with events and frames (EC `slider_depth`: DAVIS240C), Shi-Tomasi features
of frame 0 are followed by the full tracker (`e`: event network + Kalman filter; `ei`, `e-klt`
when they run) and, independently, by pyramidal LK from frame 0 directly to every later frame
covered by the events (forward-backward checked: a point whose backward track misses its seed by
more than `fb_max_px`, or that OpenCV or the image border rejects, is dropped and counted).

The tracker's position at a frame time is interpolated linearly between the fused states of the
event windows around it (`interp`: what the track says between frames; in `ei` and `e-klt` those
states also carry the earlier frames' observations, and the state after the frame carries that
frame's). `at_frame` is the tracker's own output at the frame time: the Kalman prediction in `e`,
the posterior after the frame's observation in `ei` and `e-klt` (for `e-klt` that observation is
LK itself, so its agreement is not independent). The zero-motion baseline leaves every track at
its seed. Disagreement = Euclidean distance in pixels (raw, distorted image coordinates).
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
import json
from pathlib import Path

import numpy as np

DEFAULT_MODES = ("e", "ei", "e-klt", "klt")
EXTRA_EVENT_FILES = ("events_chunk.txt",)  # the shared slider_depth excerpt; then EC/EDS names


@dataclass(frozen=True)
class RealCheckConfig:
    """Parameters of the check.

    Attributes:
        modes: tracker modes to run (see tracking.pipeline.Mode).
        n_seeds: Shi-Tomasi features seeded on frame 0 (the package's seeding).
        window_ms: event window of the tracker.
        lk_win: LK window side (odd), lk_levels: pyramid levels above the base.
        fb_max_px: forward-backward error above which an LK point is dropped.
        event_weights, image_weights: checkpoints (None: the shipped lite weights).
        device: torch device.
        event_runtime, event_onnx: `event_source.runtime` / `.onnx_model` (e.g. the int8 step).
    """

    modes: tuple[str, ...] = DEFAULT_MODES
    n_seeds: int = 50
    window_ms: float = 10.0
    lk_win: int = 21
    lk_levels: int = 3
    fb_max_px: float = 1.0
    event_weights: str | None = None
    image_weights: str | None = None
    device: str = "cpu"
    event_runtime: str = "torch"
    event_onnx: str = ""


@dataclass(frozen=True)
class RealData:
    """Frames covered by the events: (F, H, W) uint8 frames, (F,) int64 times, the events."""

    frames: np.ndarray
    frame_times_ns: np.ndarray
    events: object
    n_frames_total: int


def load_real(folder: str | Path) -> RealData:
    """Frames (`images/` + `images.txt`) and events (rows `t x y p`, s) of a recording folder;
    only the frames up to the last event are kept (the tracker has nothing to go on after)."""
    from blinktrack_ros.eval.ec_eds import EVENT_FILES, first_file, load_events, load_frames

    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"recording folder not found: {folder}")
    frames, times_ns = load_frames(folder)
    h, w = frames[0].shape[:2]
    events, _ = load_events(first_file(folder, EXTRA_EVENT_FILES + EVENT_FILES, "events file"),
                            w, h)
    covered = int(np.searchsorted(times_ns, events.t[-1], side="right")) if len(events) else 0
    if covered < 2:
        raise ValueError(f"{folder}: the events do not reach a second frame")
    return RealData(np.stack(frames[:covered]), np.asarray(times_ns[:covered]), events,
                    len(frames))


def lk_reference(frames: np.ndarray, seeds_px: np.ndarray, config: RealCheckConfig
                 ) -> tuple[np.ndarray, np.ndarray]:
    """Pyramidal LK from frame 0 to every frame, forward-backward checked.

    Returns:
        (F, N, 2) pixel xy (row 0: the seeds) and (F, N) bool valid (passed every check).
    """
    import cv2

    criteria = (cv2.TERM_CRITERIA_COUNT | cv2.TERM_CRITERIA_EPS, 30, 0.01)
    lk = {"winSize": (config.lk_win, config.lk_win), "maxLevel": config.lk_levels,
          "criteria": criteria}
    p0 = seeds_px.astype(np.float32).reshape(-1, 1, 2)
    h, w = frames.shape[1:3]
    positions = np.repeat(seeds_px[None].astype(np.float64), len(frames), axis=0)
    valid = np.ones(positions.shape[:2], bool)
    for k in range(1, len(frames)):
        fwd, ok_f, _ = cv2.calcOpticalFlowPyrLK(frames[0], frames[k], p0, None, **lk)
        back, ok_b, _ = cv2.calcOpticalFlowPyrLK(frames[k], frames[0], fwd, None, **lk)
        fwd = fwd.reshape(-1, 2).astype(np.float64)
        fb = np.linalg.norm(back.reshape(-1, 2) - seeds_px, axis=1)
        inside = (fwd[:, 0] >= 0) & (fwd[:, 0] <= w - 1) & (fwd[:, 1] >= 0) & (fwd[:, 1] <= h - 1)
        valid[k] = (ok_f.ravel() > 0) & (ok_b.ravel() > 0) & inside & (fb <= config.fb_max_px)
        positions[k] = fwd
    return positions, valid


def track_mode(data: RealData, seeds_px: np.ndarray, mode: str, config: RealCheckConfig
               ) -> tuple[np.ndarray, np.ndarray, dict]:
    """Run the full tracker in `mode` from the seeds at frame 0.

    Returns:
        interp (F, N, 2) and at_frame (F, N, 2) pixel xy, NaN where the tracker has no alive
        track (see the module docstring), and the pipeline's counters.
    """
    from dataclasses import asdict

    from blinktrack_ros.eval.tracker import LAGGED_SUFFIX, as_float_frames, seeds_from_rows
    from blinktrack_ros.tracking.build import build_pipeline, event_source_options
    from blinktrack_ros.tracking.offline import EventInput, interleave
    from blinktrack_ros.tracking.pipeline import Mode, PipelineConfig
    from blinktrack_ros.tracking.smoother import FixedLagSmoother
    from blinktrack_ros.tracking.tracks import TrackStatus

    # `<mode>+f`: the windows refined with the next frame (what node.publish_refined publishes)
    lagged = mode.endswith(LAGGED_SUFFIX)
    pipe = build_pipeline(PipelineConfig(mode=Mode(mode[:-len(LAGGED_SUFFIX)] if lagged else mode),
                                         event_window_ms=config.window_ms,
                                         reseed=False, max_pending_windows=1 << 30),
                          event_weights=config.event_weights, image_weights=config.image_weights,
                          device=config.device,
                          event_source=event_source_options(config.event_runtime,
                                                            config.event_onnx))
    n = seeds_px.shape[0]
    pipe.set_seeds(seeds_from_rows(np.column_stack([np.arange(n), np.zeros(n), seeds_px])))
    times = data.frame_times_ns
    at_frame = np.full((len(times), n, 2), np.nan)
    event_t, event_xy = [], []  # per event window: t, (N, 2) NaN where not alive
    frames = np.asarray(as_float_frames(list(data.frames)))
    smoother = FixedLagSmoother(pipe.engine.config.q, pipe.engine.config.constant_q) \
        if lagged else None
    window_of: dict[int, int] = {}  # window time -> its row in event_xy

    def positions(snap) -> np.ndarray:
        xy = np.full((n, 2), np.nan)
        alive = snap.status != TrackStatus.LOST
        ext = pipe.external_ids
        rows = np.array([ext.get(int(i), -1) for i in snap.ids[alive]], np.int64)
        ok = (rows >= 0) & (rows < n)
        xy[rows[ok]] = snap.positions_px[alive][ok]
        return xy

    def refine(snaps: list) -> None:
        for r in snaps:  # refined windows: their (alive) tracks' positions replaced
            xy, new = event_xy[window_of[int(r.t_ns)]], positions(r)
            alive = np.isfinite(new).all(1)
            xy[alive] = new[alive]

    for item in interleave(frames, times, data.events):
        is_events = isinstance(item, EventInput)
        updates = pipe.on_events(item.batch) if is_events else pipe.on_image(item.t_ns, item.gray)
        for update in updates:
            snap = update.tracks
            xy = positions(snap)
            if update.event_window:
                window_of[int(snap.t_ns)] = len(event_t)
                event_t.append(snap.t_ns)
                event_xy.append(xy)
            elif snap.t_ns in times:
                at_frame[int(np.searchsorted(times, snap.t_ns))] = xy
            if smoother is not None:
                refine(smoother.add(snap, frame=not update.event_window))
    if smoother is not None:
        refine(smoother.flush())
    interp = _interpolate(np.asarray(event_t, np.float64), np.asarray(event_xy), times)
    if interp.shape[1] != n:  # frame-only modes: no event windows to interpolate
        interp = np.full((len(times), n, 2), np.nan)
    interp[0] = seeds_px
    return interp, at_frame, asdict(pipe.stats)


def _interpolate(t: np.ndarray, xy: np.ndarray, times: np.ndarray) -> np.ndarray:
    """(W,) times, (W, N, 2) positions -> (F, N, 2) linear interpolation at `times`, NaN outside
    the span of the windows or where a bracketing window has no alive track."""
    out = np.full((len(times), xy.shape[1] if xy.ndim == 3 else 0, 2), np.nan)
    if len(t) < 2:
        return out
    for f, tf in enumerate(times.astype(np.float64)):
        j = int(np.searchsorted(t, tf))
        if j == 0 or j == len(t):
            continue
        a = (tf - t[j - 1]) / (t[j] - t[j - 1])
        out[f] = (1 - a) * xy[j - 1] + a * xy[j]  # NaN propagates from a lost track
    return out


# ---------------------------------------------------------------------------------------------
# A real error on a slider recording (EC slider_depth): static scene, camera on a linear slider.
# After undistortion every point keeps its y and moves in x linearly with the slider position
# (pure x translation: u = u0 - (f / Z) s), so per track a line fit of u against s and a
# constant fit of v must leave only the tracker's error. A track that does not move fits
# perfectly too (f / Z = 0, a point at infinity), so the fitted motion is reported beside the
# residuals, and the zero-motion row shows that floor.
# ---------------------------------------------------------------------------------------------

LINE_FIT_MIN_FRAMES = 3


def read_slider(folder: str | Path) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
    """(K (3, 3), distortion (5,), groundtruth rows t tx ...) of a slider folder, or None
    when calib.txt or groundtruth.txt is missing."""
    folder = Path(folder)
    calib, gt = folder / "calib.txt", folder / "groundtruth.txt"
    if not (calib.is_file() and gt.is_file()):
        return None
    c = np.loadtxt(calib).ravel()
    if c.size < 4:
        raise ValueError(f"{calib}: expected fx fy cx cy [k1 k2 p1 p2 k3]")
    K = np.array([[c[0], 0, c[2]], [0, c[1], c[3]], [0, 0, 1.0]])
    dist = np.zeros(5)
    dist[:min(5, c.size - 4)] = c[4:9]
    rows = np.loadtxt(gt, ndmin=2)
    if rows.shape[1] < 2 or rows.shape[0] < 2:
        raise ValueError(f"{gt}: expected rows `t tx ty tz qx qy qz qw`")
    return K, dist, rows


def slider_position(gt_rows: np.ndarray, times_s: np.ndarray) -> np.ndarray:
    """Slider x (m) at times: linear interpolation of the poses, linear extrapolation from the
    nearest 3 poses outside their span."""
    t, x = gt_rows[:, 0], gt_rows[:, 1]
    out = np.interp(times_s, t, x)
    lo, hi = times_s < t[0], times_s > t[-1]
    if lo.any():
        a = np.polyfit(t[:3], x[:3], 1)
        out[lo] = np.polyval(a, times_s[lo])
    if hi.any():
        a = np.polyfit(t[-3:], x[-3:], 1)
        out[hi] = np.polyval(a, times_s[hi])
    return out


def undistort(xy: np.ndarray, K: np.ndarray, dist: np.ndarray) -> np.ndarray:
    """(..., 2) raw pixel xy -> undistorted pixel xy (same K); NaN stays NaN."""
    import cv2

    flat = xy.reshape(-1, 2).astype(np.float64)
    ok = np.isfinite(flat).all(1)
    out = np.full_like(flat, np.nan)
    if ok.any():
        out[ok] = cv2.undistortPoints(flat[ok].reshape(-1, 1, 2), K, dist, P=K).reshape(-1, 2)
    return out.reshape(xy.shape)


def line_fit(positions: np.ndarray, valid: np.ndarray, s: np.ndarray) -> dict:
    """Per track: u = a + b s, v = c by least squares over the frames where it is valid.

    Args:
        positions: (F, N, 2) undistorted pixel xy at the frame times.
        valid: (F, N) bool.
        s: (F,) slider position (m).

    Returns:
        stats of the per-track RMS residual (px; x and y together, and each), of the fitted
        motion |b| x span(s) (px), tracks fitted and tracks with too few frames.
    """
    ok = valid & np.isfinite(positions).all(-1)
    rms, rx, ry, moved = [], [], [], []
    for n in range(positions.shape[1]):
        m = ok[:, n]
        if m.sum() < LINE_FIT_MIN_FRAMES:
            continue
        u, v, sn = positions[m, n, 0], positions[m, n, 1], s[m]
        A = np.column_stack([np.ones(sn.size), sn])
        coef, *_ = np.linalg.lstsq(A, u, rcond=None)
        eu, ev = u - A @ coef, v - v.mean()
        rms.append(np.sqrt(np.mean(eu ** 2 + ev ** 2)))
        rx.append(np.sqrt(np.mean(eu ** 2)))
        ry.append(np.sqrt(np.mean(ev ** 2)))
        moved.append(abs(coef[1]) * (sn.max() - sn.min()))
    out = {"tracks": len(rms), "too_short": int(positions.shape[1] - len(rms))}
    for key, vals in (("rms", rms), ("x", rx), ("y", ry), ("moved", moved)):
        arr = np.asarray(vals)
        out[f"{key}_median_px"] = float(np.median(arr)) if arr.size else float("nan")
        out[f"{key}_p90_px"] = float(np.percentile(arr, 90)) if arr.size else float("nan")
    return out


def slider_line_fits(folder: str | Path, result: dict) -> dict | None:
    """Line-fit residuals of every tracker of a real_check result (None without slider files).

    Event modes use `interp` (what the track says at the frame time from the events and the
    earlier frames), frame-only modes (`i`, `klt`) their output after the frame (`at_frame`);
    `lk` is the frame-0-to-frame-k LK reference, `zero motion` the seeds.
    """
    slider = read_slider(folder)
    if slider is None:
        return None
    K, dist, gt_rows = slider
    times = np.asarray(result["frame_times_s"])
    s = slider_position(gt_rows, times)
    arrays = result["arrays"]
    F = times.size
    trackers = {"zero motion": (np.repeat(arrays["seeds"][None], F, 0), np.ones(
        (F, arrays["seeds"].shape[0]), bool)),
        "lk (frame 0 -> k)": (arrays["lk"], arrays["lk_valid"])}
    for mode, info in result["modes"].items():
        if "skipped" in info:
            continue
        key = "at_frame" if mode in ("i", "klt") else "interp"  # +f modes: interp
        pos = arrays[f"{mode}_{key}"].copy()
        pos[0] = arrays["seeds"]
        trackers[f"mode {mode}"] = (pos, np.isfinite(pos).all(-1))
    fits = {name: line_fit(undistort(pos, K, dist), valid, s)
            for name, (pos, valid) in trackers.items()}
    return {"slider_m": s.tolist(), "fits": fits,
            "undistorted": {name: undistort(pos, K, dist) for name, (pos, _) in
                            trackers.items()},
            "valid": {name: valid for name, (_, valid) in trackers.items()}}


def format_line_fits(fits: dict) -> str:
    """Markdown table of the line-fit residuals per tracker."""
    lines = ["| tracker | tracks | RMS residual median [px] | p90 [px] | x median | y median "
             "| fitted motion median [px] |", "|---|---|---|---|---|---|---|"]
    for name, f in fits["fits"].items():
        lines.append(f"| {name} | {f['tracks']} | {f['rms_median_px']:.3f} | "
                     f"{f['rms_p90_px']:.3f} | {f['x_median_px']:.3f} | {f['y_median_px']:.3f}"
                     f" | {f['moved_median_px']:.1f} |")
    s = fits["slider_m"]
    lines.append(f"slider {s[0]:.4f} -> {s[-1]:.4f} m over {len(s)} frames; a correct track "
                 "keeps y and moves in x linearly with the slider (after undistortion); zero "
                 "motion fits exactly but does not move")
    return "\n".join(lines)


def plot_line_fits(fits: dict, path: str | Path) -> Path:
    """Per tracker: undistorted x minus its start against the slider position, with the
    per-track line fits, and y minus its start (should stay 0)."""
    from blinktrack_ros.eval.plots import _pyplot

    plt = _pyplot()
    names = list(fits["undistorted"])
    s = np.asarray(fits["slider_m"])
    fig, axes = plt.subplots(2, len(names), figsize=(2.8 * len(names), 5.2), sharex=True,
                             squeeze=False)
    for j, name in enumerate(names):
        pos, valid = fits["undistorted"][name], fits["valid"][name]
        for n in range(pos.shape[1]):
            m = valid[:, n] & np.isfinite(pos[:, n]).all(-1)
            if m.sum() < LINE_FIT_MIN_FRAMES:
                continue
            u, v = pos[m, n, 0], pos[m, n, 1]
            b = np.polyfit(s[m], u, 1)
            axes[0, j].plot(s[m], u - u[0], ".", ms=2, color="C0")
            axes[0, j].plot(s[m], np.polyval(b, s[m]) - u[0], "-", lw=0.5, color="C1")
            axes[1, j].plot(s[m], v - v[0], ".-", ms=2, lw=0.4, color="C2")
        f = fits["fits"][name]
        axes[0, j].set_title(f"{name}\nRMS {f['rms_median_px']:.2f} px", fontsize=8)
        axes[1, j].set_xlabel("slider x [m]")
    axes[0, 0].set_ylabel("x - x0 [px] (undistorted)")
    axes[1, 0].set_ylabel("y - y0 [px]")
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def _stats(err: np.ndarray) -> dict:
    """Median, p90, mean and count of finite errors (NaN when none)."""
    err = err[np.isfinite(err)]
    if err.size == 0:
        return {"median_px": float("nan"), "p90_px": float("nan"), "mean_px": float("nan"),
                "n": 0}
    return {"median_px": float(np.median(err)), "p90_px": float(np.percentile(err, 90)),
            "mean_px": float(err.mean()), "n": int(err.size)}


def disagreement(positions: np.ndarray, lk: np.ndarray, lk_valid: np.ndarray) -> dict:
    """Per-frame (frames 1..) and overall statistics of |positions - lk| where LK is valid."""
    err = np.linalg.norm(positions - lk, axis=2)  # F N
    err = np.where(lk_valid, err, np.nan)
    per_frame = [_stats(err[k]) for k in range(1, len(err))]
    return {"overall": _stats(err[1:].ravel()), "per_frame": per_frame,
            "not_tracked": int((lk_valid[1:] & ~np.isfinite(err[1:])).sum())}


def real_check(folder: str | Path, config: RealCheckConfig = RealCheckConfig()) -> dict:
    """Seed on frame 0, run LK and every mode, compare at the frame times.

    Returns:
        {"frame_times_s", "n_seeds", "lk_dropped" (per frame 1..), "lk_displacement" (stats of
        |LK - seed|), "zero_motion" (the seeds as a tracker), "modes": {mode: {"interp",
        "at_frame" (disagreement dicts), "stats"} or {"skipped": reason}}, "arrays": {"seeds",
        "lk", "lk_valid", "<mode>_interp", "<mode>_at_frame"} (numpy, for drawing and tests)}.
    """
    from blinktrack_ros.tracking.seeding import SeedConfig, detect_seeds

    data = load_real(folder)
    seeds = detect_seeds(data.frames[0], np.zeros((0, 2)), SeedConfig(target_count=config.n_seeds))
    if seeds.shape[0] == 0:
        raise ValueError(f"{folder}: no Shi-Tomasi corner on frame 0")
    lk, lk_valid = lk_reference(data.frames, seeds, config)
    zero = disagreement(np.repeat(seeds[None], len(lk), axis=0), lk, lk_valid)
    result = {"frame_times_s": (data.frame_times_ns * 1e-9).tolist(),
              "n_frames_compared": len(lk) - 1, "n_seeds": int(seeds.shape[0]),
              "lk_dropped": [int((~v).sum()) for v in lk_valid[1:]],
              "lk_displacement": zero["overall"], "zero_motion": zero, "modes": {},
              "arrays": {"seeds": seeds, "lk": lk, "lk_valid": lk_valid}}
    for mode in config.modes:
        try:
            interp, at_frame, stats = track_mode(data, seeds, mode, config)
        except FileNotFoundError as exc:  # e.g. no image weights for `ei`
            result["modes"][mode] = {"skipped": str(exc)}
            continue
        result["modes"][mode] = {"interp": disagreement(interp, lk, lk_valid),
                                 "at_frame": disagreement(at_frame, lk, lk_valid),
                                 "stats": stats}
        result["arrays"][f"{mode}_interp"] = interp
        result["arrays"][f"{mode}_at_frame"] = at_frame
    return result


_COLOURS = {"lk": (60, 200, 60), "seed": (160, 160, 160), "e": (40, 40, 230),
            "ei": (230, 120, 30), "e-klt": (200, 40, 200),
            "klt": (0, 160, 255), "i": (255, 200, 0)}


def render(frame: np.ndarray, result: dict, path: str | Path, scale: int = 3) -> Path:
    """Draw on the last frame: seeds (grey dots), LK (green circles, dropped points left out),
    each mode's interpolated position (coloured crosses) joined to LK by a line; a legend."""
    import cv2

    arrays = result["arrays"]
    lk, valid = arrays["lk"][-1], arrays["lk_valid"][-1]
    img = cv2.cvtColor(cv2.resize(frame, None, fx=scale, fy=scale,
                                  interpolation=cv2.INTER_NEAREST), cv2.COLOR_GRAY2BGR)

    def pt(xy: np.ndarray) -> tuple[int, int]:  # pixel centres at integer coordinates
        return int(round((xy[0] + 0.5) * scale - 0.5)), int(round((xy[1] + 0.5) * scale - 0.5))

    for s in arrays["seeds"]:
        cv2.circle(img, pt(s), 2, _COLOURS["seed"], -1, cv2.LINE_AA)
    for xy in lk[valid]:
        cv2.circle(img, pt(xy), 6, _COLOURS["lk"], 1, cv2.LINE_AA)
    legend = [("Lucas-Kanade (frame 0 -> this frame)", _COLOURS["lk"]),
              ("seed (frame 0)", _COLOURS["seed"])]
    for mode, info in result["modes"].items():
        if "skipped" in info:
            continue
        colour = _COLOURS.get(mode, (0, 200, 255))
        pos = arrays[f"{mode}_interp"][-1]
        for xy, ref in zip(pos[valid], lk[valid]):
            if np.isfinite(xy).all():
                cv2.line(img, pt(ref), pt(xy), colour, 1, cv2.LINE_AA)
                cv2.drawMarker(img, pt(xy), colour, cv2.MARKER_CROSS, 8, 1, cv2.LINE_AA)
        overall = info["interp"]["overall"]
        legend.append((f"mode {mode}: median {overall['median_px']:.2f} px", colour))
    for i, (text, colour) in enumerate(legend):
        cv2.putText(img, text, (8, 18 + 16 * i), cv2.FONT_HERSHEY_SIMPLEX, 0.45, colour, 1,
                    cv2.LINE_AA)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if not cv2.imwrite(str(path), img):
        raise OSError(f"cannot write {path}")
    return path


def summary(result: dict) -> dict:
    """The result without its arrays (what `--json` prints)."""
    from blinktrack_ros.eval.report import json_safe

    return json_safe({k: v for k, v in result.items() if k != "arrays"})


def format_table(result: dict) -> str:
    """Markdown: one row per mode and the zero-motion baseline, overall and per frame."""
    n_frames = result["n_frames_compared"]
    head = ["tracker", "compared", "median [px]", "p90 [px]", "at frame: median"]
    head += [f"f{k} median" for k in range(1, n_frames + 1)]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    rows = [("zero motion", result["zero_motion"], result["zero_motion"])]
    rows += [(f"mode {m}", i["interp"], i["at_frame"]) for m, i in result["modes"].items()
             if "interp" in i]
    for name, d, at in rows:
        o = d["overall"]
        cells = [name, str(o["n"]), f"{o['median_px']:.2f}", f"{o['p90_px']:.2f}",
                 f"{at['overall']['median_px']:.2f}"]
        cells += [f"{f['median_px']:.2f}" for f in d["per_frame"]]
        lines.append("| " + " | ".join(cells) + " |")
    for mode, info in result["modes"].items():
        if "skipped" in info:
            lines.append(f"mode {mode} skipped: {info['skipped']}")
    disp = result["lk_displacement"]
    lines.append(f"{result['n_seeds']} seeds on frame 0; frames 1..{n_frames} at "
                 + ", ".join(f"{t:.4f}" for t in result["frame_times_s"][1:]) + " s; LK points "
                 f"dropped per frame (forward-backward check): {result['lk_dropped']}; LK "
                 f"displacement from the seed: median {disp['median_px']:.2f} px, p90 "
                 f"{disp['p90_px']:.2f} px")
    return "\n".join(lines)


def run_realcheck(args: argparse.Namespace) -> int:
    """`blinktrack realcheck`: print the table (or JSON), write the figure and numbers."""
    from blinktrack_ros.cli import UsageError

    modes = tuple(m.strip() for m in args.modes.split(",") if m.strip())
    from blinktrack_ros.eval.tracker import LAGGED_SUFFIX

    known = {"e", "i", "ei", "ei-naive", "klt", "e-klt"}
    known |= {m + LAGGED_SUFFIX for m in ("e", "ei", "ei-naive", "e-klt")}
    if not modes or set(modes) - known:
        raise UsageError(f"--modes: choose from {sorted(known)}, got {args.modes!r}")
    if args.seeds < 1 or args.fb_max <= 0:
        raise UsageError("--seeds must be >= 1 and --fb-max > 0")
    if args.threads > 0:
        import torch

        torch.set_num_threads(args.threads)
    config = RealCheckConfig(modes=modes, n_seeds=args.seeds, window_ms=args.window_ms,
                             fb_max_px=args.fb_max, event_weights=args.event_weights,
                             image_weights=args.image_weights, device=args.device,
                             event_runtime=args.event_runtime, event_onnx=args.event_onnx)
    result = real_check(args.data, config)
    try:
        fits = slider_line_fits(args.data, result)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    table = format_table(result)
    if fits is not None:
        result["line_fit"] = fits["fits"]
        table += "\n\nLine-fit residuals (real error on a slider recording):\n\n" + \
            format_line_fits(fits)
    if args.out:
        out = Path(args.out)
        frame = load_real(args.data).frames[-1]
        image = render(frame, result, out / "realcheck.png")
        if fits is not None:
            plot_line_fits(fits, out / "realcheck_linefit.png")
        (out / "realcheck.json").write_text(json.dumps(summary(result), indent=1))
        (out / "realcheck.md").write_text(table + "\n")
    if args.json:
        print(json.dumps(summary(result)))
    else:
        print(table)
        if args.out:
            print(f"wrote {image}, realcheck_linefit.png, realcheck.json, realcheck.md")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    """Add `blinktrack realcheck`."""
    from blinktrack_ros.tracking.build import add_event_runtime_args

    p = sub.add_parser(
        "realcheck", help="real events + frames, no ground truth: tracker vs Lucas-Kanade",
        description="Seed Shi-Tomasi features on frame 0 of a real recording, follow them with "
                    "the tracker through the events and with pyramidal LK (forward-backward "
                    "checked) from frame 0 to each later frame the events cover; print the "
                    "disagreement at the frame times (median/p90 px), per mode, against a "
                    "zero-motion baseline.")
    p.add_argument("data", help="folder with images/, images.txt and events (rows t x y p), "
                                "e.g. ../shared/data/ec_slider_depth")
    p.add_argument("--modes", default=",".join(DEFAULT_MODES),
                   help="comma-separated modes; an event mode with the suffix +f (e-klt+f, "
                        "ei+f) uses its event windows refined with the next frame (what "
                        "node.publish_refined publishes)")
    p.add_argument("--seeds", type=int, default=RealCheckConfig.n_seeds,
                   help="Shi-Tomasi features on frame 0")
    p.add_argument("--window-ms", type=float, default=RealCheckConfig.window_ms,
                   help="event window")
    p.add_argument("--fb-max", type=float, default=RealCheckConfig.fb_max_px,
                   help="LK forward-backward error (px) above which a point is dropped")
    p.add_argument("--event-weights", help="event network checkpoint (default: shipped lite)")
    p.add_argument("--image-weights", help="image network checkpoint (default: shipped lite)")
    add_event_runtime_args(p)
    p.add_argument("--device", default="cpu", help="torch device")
    p.add_argument("--threads", type=int, default=0, help="torch threads (0: torch default)")
    p.add_argument("--out", help="folder for realcheck.png (last frame annotated), .json, .md")
    p.add_argument("--json", action="store_true", help="print the numbers as one JSON object")
    p.set_defaults(func=run_realcheck)
