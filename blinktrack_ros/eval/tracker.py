"""The tracking pipeline as the benchmark runner's TrackerFn."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np

from blinktrack_ros.tracking.build import build_pipeline
from blinktrack_ros.tracking.engine import FusionConfig
from blinktrack_ros.tracking.observation import Observations
from blinktrack_ros.tracking.offline import interleave, run_offline
from blinktrack_ros.tracking.pipeline import Mode, PipelineConfig
from blinktrack_ros.tracking.seeding import Seeds

# The benchmark follows every given feature to the end of the sequence, as the paper's
# evaluation does: a track is never dropped (the reference protocol crops the ground truth to a
# prediction's time span, so dropping tracks early would flatter the score). Occluded or lost
# features keep their Kalman prediction.
BENCHMARK_FUSION = FusionConfig(lost_after_s=1.0e6, out_of_image_margin_px=1.0e6)


# A mode name with this suffix (`ei+s`, `e-klt+s`, ...) runs the mode and reports the offline
# RTS-smoothed tracks (tracking.smoother): every position also uses the later observations.
SMOOTHED_SUFFIX = "+s"
# A mode name with this suffix (`klt+p`, `i+p`) reports what a live node publishing at the event
# window rate would give between updates: the causal Kalman prediction from the last update
# (`TrackLog.as_rows(predict_every_ns=...)`). Frame-only modes otherwise write rows at frame
# times only, and the protocol interpolates them linearly, i.e. it uses the next frame.
PREDICTED_SUFFIX = "+p"
# A mode name with this suffix (`ei+f`, `e-klt+f`) reports the tracks smoothed with a fixed lag:
# each position also uses the observations up to the next frame, and no later ones
# (`TrackLog.as_rows(smooth_until_ns=frame times)`): the information the protocol's linear
# interpolation gives the frame-only modes, which a node can publish one frame late.
LAGGED_SUFFIX = "+f"
SUFFIXES = (SMOOTHED_SUFFIX, PREDICTED_SUFFIX, LAGGED_SUFFIX)


def split_suffix(mode: str) -> tuple[str, str]:
    """`ei+s` -> ("ei", "+s"); `klt+p` -> ("klt", "+p"); `ei` -> ("ei", "")."""
    for suffix in SUFFIXES:
        if mode.endswith(suffix):
            return mode[:-len(suffix)], suffix
    return mode, ""


def seeds_from_rows(rows: np.ndarray) -> Seeds:
    """(N, 4) rows `id t0 x y` -> Seeds."""
    rows = np.asarray(rows, np.float64).reshape(-1, 4)
    return Seeds(ids=rows[:, 0].astype(np.uint32), t_s=rows[:, 1], positions_px=rows[:, 2:4],
                 visibility=np.ones(rows.shape[0]))


def as_float_frames(frames: list[np.ndarray]) -> list[np.ndarray]:
    """uint8 or float frames -> float32 in [0, 1]."""
    return [f.astype(np.float32) / 255.0 if f.dtype == np.uint8 else f.astype(np.float32)
            for f in frames]


def pipeline_tracker(event_weights: str | Path | None = None,
                     image_weights: str | Path | None = None, untrained: bool = False,
                     device: str = "cpu", progress: bool = False,
                     fusion: FusionConfig | None = None,
                     observer: Callable[[Observations, dict[int, int]], None] | None = None,
                     with_status: bool = False, klt_configs: dict | None = None,
                     event_source: dict | None = None):
    """A TrackerFn(sequence, mode, seeds, window_ns) -> rows `id t x y` running our pipeline.

    fusion: the fusion settings (default BENCHMARK_FUSION). observer: called with every
    observation array before it is fused, and the internal -> external id map (calibration).
    with_status: rows `id t x y status` (TrackStatus), e.g. to draw occluded tracks.
    A mode with the suffix `+s` (e.g. `ei+s`) returns the offline RTS-smoothed tracks; with
    `+p` (e.g. `klt+p`) the causal prediction is added every window between updates.
    klt_configs: preset name -> KltConfig for the modes that use KLT (the preset of a sequence
    is `benchmark.preset_of(name)`; key "*" for any other; None: KltConfig defaults).
    event_source: EventSourceConfig fields (e.g. {"runtime": "onnxruntime"}).
    """
    fusion = fusion or BENCHMARK_FUSION

    def track(seq, mode: str, seeds: np.ndarray, window_ns: int) -> np.ndarray:
        base, suffix = split_suffix(mode)
        smooth = suffix in (SMOOTHED_SUFFIX, LAGGED_SUFFIX)
        predict = suffix == PREDICTED_SUFFIX
        config = PipelineConfig(mode=Mode(base), event_window_ms=window_ns * 1e-6,
                                reseed=False, max_pending_windows=1 << 30)
        klt_config = None
        if klt_configs:
            from blinktrack_ros.eval.benchmark import preset_of

            klt_config = klt_configs.get(preset_of(seq.name), klt_configs.get("*"))
        pipe = build_pipeline(config, fusion=fusion, event_weights=event_weights,
                              image_weights=image_weights, device=device, untrained=untrained,
                              klt_config=klt_config, event_source=event_source)
        if observer is not None:
            engine, apply = pipe.engine, pipe.engine.apply

            def observed_apply(obs: Observations):
                observer(obs, pipe.fusion.external_ids)
                return apply(obs)

            engine.apply = observed_apply
        seed_rows = np.asarray(seeds, np.float64).copy()
        # a seed is born at the first frame at or after its time: allow for clock rounding
        seed_rows[:, 1] = np.maximum(seed_rows[:, 1] - 1e-6, 0.0)
        pipe.set_seeds(seeds_from_rows(seed_rows))
        frames = as_float_frames(seq.frames)
        inputs = interleave(np.asarray(frames), np.asarray(seq.frame_times_ns), seq.events)
        log = run_offline(pipe, inputs, progress=progress, keep_state=smooth or predict)
        rows = log.as_rows(pipe.external_ids, smooth=fusion if smooth else None,
                           predict_every_ns=int(window_ns) if predict else None,
                           smooth_until_ns=np.asarray(seq.frame_times_ns)
                           if suffix == LAGGED_SUFFIX else None)
        return rows if with_status else rows[:, :4]

    return track
