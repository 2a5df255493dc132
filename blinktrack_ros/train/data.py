"""Training data: a cached set of small synthetic sequences and augmented track snippets.

Realistic random training data (DAVIS-like sensor, every parameter drawn per sequence over
ranges wider than the test presets, training-split photographs + procedural textures):

    from blinktrack_ros.train.data import DataSpec, load_or_generate
    spec = DataSpec(preset="random", duration_s=0.5, seeds=tuple(range(1000, 1000 + N)))
    seqs = load_or_generate(spec, "cache/train", workers=8)   # N CachedSequence, cached as npz

Other presets (`davis`, `fast`, ...) work the same way and also use training textures; the
challenge test set uses other seeds and held-out photographs (`synth.textures`).

A snippet is one sequence, one start time t0 (a frame time), one random similarity transform
(augmentation) and up to `n_tracks` ground-truth tracks that are visible at t0. Everything in a
snippet (frames, events, ground truth) is already in the transformed image coordinates, so the
training code uses exactly the inference conventions (`sbt_max_patches`, `crop_patches`).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path

import cv2
import numpy as np
from tqdm import tqdm

from blinktrack_ros.events.batch import EventBatch
from blinktrack_ros.synth.config import preset

CACHE_VERSION = 2  # 2: sensor presets, training-split textures
BORDER_PX = 12  # tracks start at least this far from the image border


@dataclass(frozen=True)
class CachedSequence:
    """The arrays of one synthetic sequence needed for training.

    Attributes:
        frames: (T, H, W) float32 grey frames in [0, 1].
        frame_times_ns: (T,) int64.
        events: time-sorted events.
        gt_times_ns: (S,) int64 ground-truth times.
        gt_xy: (S, N, 2) float64 pixel xy.
        gt_vis: (S, N) int8 (1 visible, 0 occluded, -1 outside).
        query_t_ns: (N,) int64 time each track starts.
    """

    frames: np.ndarray
    frame_times_ns: np.ndarray
    events: EventBatch
    gt_times_ns: np.ndarray
    gt_xy: np.ndarray
    gt_vis: np.ndarray
    query_t_ns: np.ndarray

    @property
    def size(self) -> tuple[int, int]:
        """(width, height) in pixels."""
        return self.events.width, self.events.height

    def gt_at(self, times_ns: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Ground truth (K, N, 2) xy and (K, N) vis at any times within the GT span.

        Exact at GT sample times; between samples (e.g. 10 ms steps from a sensor frame
        stamped at the centre of its exposure, half a millisecond off the 1 kHz grid) xy is
        interpolated linearly between the two neighbouring samples (1 ms apart: the error is
        below acceleration x (0.5 ms)^2 / 2) and vis is the lower of the two (occluded or
        outside wins).
        """
        t = np.asarray(times_ns, np.int64)
        gt_t = self.gt_times_ns
        if t.min() < gt_t[0] or t.max() > gt_t[-1]:
            raise ValueError("requested times are outside the ground truth")
        hi = np.clip(np.searchsorted(gt_t, t), 1, gt_t.size - 1)
        exact = gt_t[np.minimum(np.searchsorted(gt_t, t), gt_t.size - 1)] == t
        lo = hi - 1
        w = ((t - gt_t[lo]) / np.maximum(gt_t[hi] - gt_t[lo], 1))[:, None, None]
        w = np.where(exact[:, None, None], np.where(gt_t[hi] == t, 1.0, 0.0)[:, None, None], w)
        xy = (1 - w) * self.gt_xy[lo] + w * self.gt_xy[hi]
        vis = np.minimum(self.gt_vis[lo], self.gt_vis[hi])
        at_hi, at_lo = exact & (gt_t[hi] == t), exact & (gt_t[lo] == t)
        vis[at_hi] = self.gt_vis[hi[at_hi]]
        vis[at_lo] = self.gt_vis[lo[at_lo]]
        return xy, vis

    def gt_index(self, times_ns: np.ndarray) -> np.ndarray:
        """Indices of the ground-truth samples at exactly these times (ValueError if absent)."""
        idx = np.searchsorted(self.gt_times_ns, times_ns)
        idx = np.minimum(idx, self.gt_times_ns.size - 1)
        if not np.array_equal(self.gt_times_ns[idx], times_ns):
            raise ValueError("requested times are not ground-truth sample times")
        return idx


@dataclass(frozen=True)
class DataSpec:
    """Which sequences to generate: preset, size, duration and seeds."""

    preset: str = "train"
    width: int = 240
    height: int = 180
    duration_s: float = 0.5
    seeds: tuple[int, ...] = tuple(range(1000, 1024))

    def key(self, seed: int) -> str:
        """File name of one cached sequence."""
        return (f"v{CACHE_VERSION}_{self.preset}_{self.width}x{self.height}_"
                f"{self.duration_s:g}s_seed{seed}.npz")


def generate(spec: DataSpec, seed: int) -> CachedSequence:
    """Generate one sequence of the spec in memory (training-split textures, never test)."""
    from blinktrack_ros.synth.sequence import generate_sequence
    from blinktrack_ros.synth.textures import sample_textures

    config = preset(spec.preset, spec.width, spec.height, spec.duration_s)
    textures = sample_textures(seed, "train") if config.sensor is not None else None
    seq = generate_sequence(config, seed, textures)
    return CachedSequence(seq.frames.astype(np.float32), seq.frame_times_ns, seq.events,
                          seq.gt.times_ns, seq.gt.xy, seq.gt.vis, seq.gt.query_t_ns)


def _save(path: Path, s: CachedSequence) -> None:
    tmp = path.with_suffix(".tmp.npz")
    np.savez(tmp, frames=s.frames.astype(np.float16), frame_times_ns=s.frame_times_ns,
             ex=s.events.x, ey=s.events.y, et=s.events.t, ep=s.events.p,
             size=np.array([s.events.width, s.events.height]), gt_times_ns=s.gt_times_ns,
             gt_xy=s.gt_xy, gt_vis=s.gt_vis, query_t_ns=s.query_t_ns)
    tmp.replace(path)


def _load(path: Path) -> CachedSequence:
    with np.load(path) as z:
        w, h = (int(v) for v in z["size"])
        events = EventBatch(z["ex"], z["ey"], z["et"], z["ep"], w, h)
        return CachedSequence(z["frames"].astype(np.float32), z["frame_times_ns"], events,
                              z["gt_times_ns"], z["gt_xy"], z["gt_vis"], z["query_t_ns"])


def _generate_rounded(spec: DataSpec, seed: int) -> CachedSequence:
    seq = generate(spec, seed)  # frames stored as float16: the same values cached or not
    return replace(seq, frames=seq.frames.astype(np.float16).astype(np.float32))


def load_or_generate(spec: DataSpec, cache_dir: str | Path | None,
                     progress: bool = True, workers: int = 1) -> list[CachedSequence]:
    """The spec's sequences, generated once into cache_dir (None: no cache) with progress.

    Frames are kept at float16 precision whether they come from the cache or not, so a run
    sees the same data when it is resumed from the cache. workers > 1 generates the missing
    sequences in that many processes (same arrays as one process: each depends on its seed).
    """
    cache = Path(cache_dir) if cache_dir is not None else None
    if cache is not None:
        cache.mkdir(parents=True, exist_ok=True)
    paths = [cache / spec.key(seed) if cache is not None else None for seed in spec.seeds]
    found: dict[int, CachedSequence] = {}
    missing = []
    for i, path in enumerate(paths):
        if path is not None and path.is_file():
            found[i] = _load(path)
        else:
            missing.append(i)
    bar = tqdm(total=len(spec.seeds), initial=len(found), desc=f"sequences ({spec.preset})",
               disable=not progress)
    if workers > 1 and len(missing) > 1:
        from concurrent.futures import ProcessPoolExecutor

        with ProcessPoolExecutor(min(workers, len(missing))) as pool:
            futures = {i: pool.submit(_generate_rounded, spec, spec.seeds[i]) for i in missing}
            for i, fut in futures.items():
                found[i] = fut.result()
                if paths[i] is not None:
                    _save(paths[i], found[i])
                bar.update()
    else:
        for i in missing:
            found[i] = _generate_rounded(spec, spec.seeds[i])
            if paths[i] is not None:
                _save(paths[i], found[i])
            bar.update()
    bar.close()
    return [found[i] for i in range(len(spec.seeds))]


@dataclass(frozen=True)
class Augment:
    """Augmentation ranges: similarity transform about the image centre, start-position noise."""

    scale: float = 0.2  # scale factor in [1 - scale, 1 + scale]
    rotation_deg: float = 15.0
    crop_noise_px: float = 3.0

    @staticmethod
    def none() -> Augment:
        """No augmentation (validation, evaluation)."""
        return Augment(0.0, 0.0, 0.0)


@dataclass(frozen=True)
class Snippet:
    """Ground truth of tracks over a few times, in (augmented) image coordinates.

    Attributes:
        times_ns: (K,) int64 sample times; times_ns[0] = t0 is a frame time.
        xy: (K, N, 2) pixel xy ground truth.
        vis: (K, N) int8 visibility (1 visible, 0 occluded, -1 outside the image).
        frames: (F, H, W) float32 frames at frame_times_ns.
        frame_times_ns: (F,) int64.
        events: events with t0 < t <= times_ns[-1] (None when not requested).
        start_xy: (N, 2) pixel xy where tracking starts at t0 (xy[0] + crop noise).
        span_frame_times_ns: times of the sequence's frames in (t0, times_ns[-1]] (whether
            or not `frames` holds them: `--frame-updates` observes the ground truth there).
    """

    times_ns: np.ndarray
    xy: np.ndarray
    vis: np.ndarray
    frames: np.ndarray
    frame_times_ns: np.ndarray
    events: EventBatch | None
    start_xy: np.ndarray
    span_frame_times_ns: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))


def _transform(rng: np.random.Generator, aug: Augment, w: int, h: int) -> np.ndarray:
    """(2, 3) similarity p' = s R (p - c) + c about the image centre c."""
    s = 1.0 + rng.uniform(-aug.scale, aug.scale)
    a = np.deg2rad(rng.uniform(-aug.rotation_deg, aug.rotation_deg))
    c = np.array([(w - 1) / 2.0, (h - 1) / 2.0])
    lin = s * np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]])
    return np.hstack([lin, (c - lin @ c)[:, None]])


def _apply(A: np.ndarray, xy: np.ndarray) -> np.ndarray:
    return xy @ A[:, :2].T + A[:, 2]


def _warp_events(events: EventBatch, A: np.ndarray) -> EventBatch:
    """Events moved by A (rounded to pixels); those leaving the sensor are dropped."""
    xy = _apply(A, np.stack([events.x, events.y], 1).astype(np.float64))
    xi = np.floor(xy[:, 0] + 0.5).astype(np.int64)
    yi = np.floor(xy[:, 1] + 0.5).astype(np.int64)
    ok = (xi >= 0) & (yi >= 0) & (xi < events.width) & (yi < events.height)
    return EventBatch(xi[ok].astype(events.x.dtype), yi[ok].astype(events.y.dtype),
                      events.t[ok], events.p[ok], events.width, events.height)


def _start_time(seq: CachedSequence, span_ns: int, rng: np.random.Generator) -> int | None:
    last = int(min(seq.gt_times_ns[-1], seq.frame_times_ns[-1]))
    ok = seq.frame_times_ns[seq.frame_times_ns + span_ns <= last]
    return int(rng.choice(ok)) if ok.size else None


def _frame_step_start(seq: CachedSequence, n_steps: int, rng: np.random.Generator) -> int | None:
    """A random frame time with n_steps later frames inside the ground truth."""
    last = int(seq.gt_times_ns[-1])
    ok = np.flatnonzero(seq.frame_times_ns <= last)
    ok = ok[ok + n_steps <= ok.max(initial=-1)] if ok.size else ok
    return int(seq.frame_times_ns[int(rng.choice(ok))]) if ok.size else None


def sample_snippet(seq: CachedSequence, rng: np.random.Generator, n_tracks: int, n_steps: int,
                   step_ns: int, aug: Augment, with_events: bool, n_frames: int = 1,
                   t0_ns: int | None = None, frame_steps: bool | None = None) -> Snippet | None:
    """Draw a snippet of n_steps steps of step_ns after a start frame; None if impossible.

    Args:
        seq: the source sequence.
        rng: random generator (start time, transform, tracks, noise).
        n_tracks: at most this many tracks (visible, alive and away from the border at t0).
        n_steps: steps after t0 (K = n_steps + 1 sample times).
        step_ns: step length (event window, or frame period for the image module).
        aug: augmentation ranges.
        with_events: include the (transformed) events of (t0, t_last].
        n_frames: frames from t0 on to include (1: the reference frame only).
        t0_ns: fixed start time (default: random frame time).
        frame_steps: the sample times are the n_steps + 1 consecutive frame times from t0
            (step_ns is ignored). Default (None): on when n_frames == n_steps + 1 and no
            events are asked (the image module), so sensor presets with their own, slightly
            irregular frame rate per sequence get the ground truth of each frame exactly.
    """
    if frame_steps is None:
        frame_steps = n_frames == n_steps + 1 and not with_events
    if frame_steps:
        t0 = _frame_step_start(seq, n_steps, rng) if t0_ns is None else int(t0_ns)
        if t0 is None:
            return None
        f0 = int(np.searchsorted(seq.frame_times_ns, t0))
        times = seq.frame_times_ns[f0:f0 + n_steps + 1].astype(np.int64)
        if times.size < n_steps + 1 or times[-1] > seq.gt_times_ns[-1]:
            return None
    else:
        span = n_steps * step_ns
        t0 = _start_time(seq, span, rng) if t0_ns is None else int(t0_ns)
        if t0 is None:
            return None
        times = t0 + step_ns * np.arange(n_steps + 1, dtype=np.int64)
    w, h = seq.size
    A = _transform(rng, aug, w, h)
    gxy, vis = seq.gt_at(times)
    xy = _apply(A, gxy)  # K N 2
    vis = vis.copy()
    inside = ((xy[..., 0] >= -0.5) & (xy[..., 0] <= w - 0.5) & (xy[..., 1] >= -0.5)
              & (xy[..., 1] <= h - 0.5))
    vis[~inside] = -1
    ok = (vis[0] == 1) & (seq.query_t_ns <= t0) & (xy[0, :, 0] >= BORDER_PX) & (
        xy[0, :, 0] <= w - 1 - BORDER_PX) & (xy[0, :, 1] >= BORDER_PX) & (
        xy[0, :, 1] <= h - 1 - BORDER_PX)
    cand = np.flatnonzero(ok)
    if cand.size == 0:
        return None
    pick = np.sort(rng.choice(cand, size=min(n_tracks, cand.size), replace=False))
    f0 = int(np.searchsorted(seq.frame_times_ns, t0))
    fidx = np.arange(f0, min(f0 + n_frames, seq.frame_times_ns.size))
    frames = np.stack([cv2.warpAffine(seq.frames[i], A, (w, h), flags=cv2.INTER_LINEAR,
                                      borderMode=cv2.BORDER_CONSTANT, borderValue=0.0)
                       for i in fidx]).astype(np.float32)
    events = _warp_events(seq.events.slice_time(t0, int(times[-1])), A) if with_events \
        else None
    noise = rng.uniform(-aug.crop_noise_px, aug.crop_noise_px, size=(pick.size, 2))
    ft = np.asarray(seq.frame_times_ns, np.int64)
    return Snippet(times, xy[:, pick], vis[:, pick], frames, seq.frame_times_ns[fidx], events,
                   xy[0, pick] + noise, ft[(ft > times[0]) & (ft <= times[-1])])


def sample_snippets(seqs: list[CachedSequence], rng: np.random.Generator, n_snippets: int,
                    **kwargs) -> list[Snippet]:
    """n_snippets snippets from random sequences (redraws impossible ones, bounded)."""
    out: list[Snippet] = []
    for _ in range(50 * n_snippets):
        if len(out) == n_snippets:
            break
        s = sample_snippet(seqs[int(rng.integers(len(seqs)))], rng, **kwargs)
        if s is not None:
            out.append(s)
    if len(out) < n_snippets:
        raise RuntimeError("could not draw snippets: sequences too short or without tracks")
    return out
