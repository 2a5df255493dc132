"""`blinktrack bench fusion`: Kalman update throughput and end-to-end engine latency."""

from __future__ import annotations

import argparse

import numpy as np

_SIZES = (64, 1000, 10000)


def register_bench(bench_sub: argparse._SubParsersAction) -> None:
    """Add `blinktrack bench fusion [--json] [--repeats K]`."""
    p = bench_sub.add_parser(
        "fusion", help="Kalman fusion: track-updates/s (N = 64, 1000, 10000), 64-track latency")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument("--repeats", type=int, default=50, help="timed repetitions per figure")
    p.set_defaults(func=_bench_fusion)


def _problem(n: int, seed: int = 0) -> tuple[np.ndarray, ...]:
    """Random but well-conditioned states, covariances, observations for n tracks."""
    rng = np.random.default_rng(seed)
    x = np.column_stack([rng.uniform(0, 640, (n, 2)), rng.normal(0, 50, (n, 2))])
    A = rng.normal(size=(n, 4, 4))
    P = A @ A.swapaxes(1, 2) + np.eye(4)
    z = x[:, :2] + rng.normal(0, 1, (n, 2))
    R = np.tile(np.eye(2), (n, 1, 1)) * rng.uniform(0.1, 4, (n, 1, 1))
    dt = rng.uniform(0.001, 0.01, n)
    return x, P, z, R, dt


def reference_pinv_update(x: np.ndarray, P: np.ndarray, z: np.ndarray, R: np.ndarray,
                          dt: np.ndarray, q: float) -> tuple[np.ndarray, np.ndarray]:
    """A per-track loop like the reference code (np.linalg.pinv of each 2x2 S); for comparison.

    Written here from the textbook equations (standard, not Joseph, covariance update as the
    reference does); only its cost matters.
    """
    H = np.eye(2, 4)
    x_out, P_out = np.empty_like(x), np.empty_like(P)
    for i in range(x.shape[0]):
        F = np.eye(4)
        F[0, 2] = F[1, 3] = dt[i]
        Q = q * np.eye(4)
        xp = F @ x[i]
        Pp = F @ P[i] @ F.T + Q
        S = H @ Pp @ H.T + R[i]
        K = Pp @ H.T @ np.linalg.pinv(S)
        x_out[i] = xp + K @ (z[i] - H @ xp)
        P_out[i] = (np.eye(4) - K @ H) @ Pp
    return x_out, P_out


def fusion_figures(repeats: int = 50) -> dict[str, float]:
    """Measure the figures of `blinktrack bench fusion` (medians of `repeats` runs)."""
    from tqdm import tqdm

    from blinktrack_ros import kalman
    from blinktrack_ros.bench.util import time_calls

    def kf_step(x, P, z, R, dt):  # what the fusion engine runs per observation array
        return kalman.predict_update(x, P, dt, 1e4, z, R)

    def kf_two_calls(x, P, z, R, dt):  # the same as two calls (the engine with a gate)
        return kalman.update(*kalman.predict(x, P, dt, 1e4), z, R)

    figures: dict[str, float] = {}
    for n in tqdm(_SIZES, desc="predict+update", leave=False):
        problem = _problem(n)
        # interleaved, so that both see the same machine state and allocator history
        fused, two = np.empty(repeats), np.empty(repeats)
        for i in range(repeats):
            fused[i] = time_calls(lambda p=problem: kf_step(*p), 1, warmup=1 if i else 2)[0]
            two[i] = time_calls(lambda p=problem: kf_two_calls(*p), 1, warmup=0)[0]
        t = np.median(fused)
        figures[f"kf_numpy_N{n}_track_updates_per_s"] = n / t
        figures[f"kf_numpy_N{n}_time_ms"] = t * 1e3
        figures[f"kf_two_calls_N{n}_track_updates_per_s"] = n / np.median(two)
    for n in (64, 1000):
        x, P, z, R, dt = _problem(n)
        loops = max(3, repeats // 10 if n > 64 else repeats)
        t = np.median(time_calls(lambda p=(x, P, z, R, dt): reference_pinv_update(*p, 1e4),
                                 loops, warmup=1))
        figures[f"pinv_loop_N{n}_track_updates_per_s"] = n / t
        speedup = figures[f"kf_numpy_N{n}_track_updates_per_s"] * t / n
        figures[f"speedup_vs_pinv_loop_N{n}_x"] = speedup
    from blinktrack_ros.tracking import fusion_jit

    figures["engine_fusion_kernel"] = "numba" if fusion_jit.KERNEL.available() else \
        f"numpy ({fusion_jit.KERNEL.error()})"
    for n in (64, 1000):  # the engine's whole apply, compiled kernel (default) and numpy
        with_kernel = _engine_latency(repeats, n)
        numpy_only = _engine_latency(repeats, n, compiled=False)
        if n == 64:
            figures["engine_apply_64_tracks_ms"] = with_kernel * 1e3
            figures["engine_apply_64_tracks_numpy_ms"] = numpy_only * 1e3
        figures[f"engine_apply_N{n}_track_updates_per_s"] = n / with_kernel
        figures[f"engine_apply_N{n}_numpy_track_updates_per_s"] = n / numpy_only
    figures["klt_observe_64_tracks_240x180_ms"] = _klt_latency(repeats) * 1e3
    return figures


def _klt_latency(repeats: int) -> float:
    """Median seconds of one KLT observe (forward + backward LK) of 64 tracks, 240x180 frames."""
    import cv2

    from blinktrack_ros.bench.util import time_calls
    from blinktrack_ros.tracking.klt import KltSource
    from blinktrack_ros.tracking.seeding import SeedConfig, detect_seeds

    rng = np.random.default_rng(2)
    texture = cv2.GaussianBlur(rng.random((200, 260)).astype(np.float32), (0, 0), 2.0)
    texture = (texture - texture.min()) / (texture.max() - texture.min())
    frames = [texture[10 + k % 3:190 + k % 3, 10 + k % 5:250 + k % 5] for k in range(8)]
    points = detect_seeds(frames[0], np.zeros((0, 2)), SeedConfig(target_count=64))
    ids = np.arange(points.shape[0], dtype=np.uint32)
    klt, calls = KltSource(), [0]

    def observe_next_frame() -> None:
        calls[0] += 1
        klt.observe(calls[0] * 33_000_000, frames[calls[0] % 8], ids, points)

    return float(np.median(time_calls(observe_next_frame, repeats)))


def _engine_latency(repeats: int, n: int = 64, compiled: bool = True) -> float:
    """Median seconds to apply one n-track observation array through the engine (compiled:
    the numba fusion kernel where available, else the numpy code)."""
    import contextlib
    import time

    from blinktrack_ros.tracking import fusion_jit
    from blinktrack_ros.tracking.engine import FusionEngine
    from blinktrack_ros.tracking.observation import Observations, Source

    rng = np.random.default_rng(1)
    engine = FusionEngine()
    ids = engine.add_tracks(0, rng.uniform(0, 640, (n, 2)))
    k = max(repeats, 20) * (10 if n <= 64 else 2)
    arrays = [Observations(Source.EVENT if i % 2 else Source.IMAGE, (i + 1) * 5_000_000, ids,
                           rng.uniform(0, 640, (n, 2)), np.tile(np.eye(2), (n, 1, 1)),
                           rng.uniform(0.6, 1.0, n)) for i in range(k)]
    times = np.empty(k)
    with contextlib.nullcontext() if compiled else fusion_jit.KERNEL.disabled("numpy figure"):
        for i, obs in enumerate(arrays):
            t0 = time.perf_counter()
            engine.apply(obs)
            times[i] = time.perf_counter() - t0
    return float(np.median(times[10:]))


def _bench_fusion(args: argparse.Namespace) -> int:
    from blinktrack_ros.bench.util import report
    from blinktrack_ros.cli import UsageError

    if args.repeats < 1:
        raise UsageError("--repeats must be >= 1")
    report("fusion", fusion_figures(args.repeats), args.json)
    return 0
