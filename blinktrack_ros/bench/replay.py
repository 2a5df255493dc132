"""Figures of `blinktrack bench pipeline` without ROS: the offline replay's real-time factor.

Two measurements on one synthetic sequence (frames at `frame_hz`, events in 1 ms packets):
- in memory: the Pipeline alone, fed by `tracking.offline.interleave` (no bag, no decode);
- the whole replay: the sequence written as an mcap bag, then read, decoded, tracked and the
  tracks and observations written to another mcap bag, as `blinktrack track` does.

The real-time factor is data seconds / wall seconds (>= 1 keeps up with the sensors); the `_cpu`
variant divides by this process's CPU seconds instead (what an unshared core would give when
torch runs on one thread: robust to other load on a shared machine), and `_two_free_cores` by
the CPU seconds of the busier of the two paths (calling thread: events, fusion; worker: frames),
what two unshared cores would give with frames on the worker.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
import time
from typing import Any

import numpy as np

from blinktrack_ros.events.batch import EventBatch
from blinktrack_ros.tracking.pipeline import Pipeline, Update, offline_frame_join_ms


@dataclass(frozen=True)
class BenchSetup:
    """What `blinktrack bench pipeline` measures.

    Attributes:
        width, height: sensor size of the synthetic sequence, pixels.
        duration_s: length of the sequence.
        frame_hz: frame rate (the preset's rate is overridden).
        window_ms: event window of the pipeline.
        target_count: tracks seeded (Shi-Tomasi top-up on every frame).
        mode: pipeline mode value (`ei` = event + image networks, Kalman fusion).
        preset: synthetic preset name.
        seed: sequence seed.
        event_weights, image_weights: checkpoints; None = the shipped lite weights.
        frame_join_ms: Pipeline's frame_join_ms (frames concurrent with event windows); None:
            `offline_frame_join_ms()`, what `blinktrack track` runs with these torch threads.
        event_msg: event message of the replayed bag: "dvs" (dvs_msgs/EventArray) or "evt3"
            (event_camera_msgs/EventPacket, Prophesee's encoding, decoded per packet).
        event_rate_mev_s: 0 = the simulated events only; above their rate, uniform random
            events are added up to this rate (a Prophesee-like 10-30 Mev/s stream).
        event_runtime: `event_source.runtime` (torch or onnxruntime).
        event_onnx: `event_source.onnx_model` (onnxruntime: a step graph, e.g. int8; empty =
            exported from the weights at start).
    """

    width: int = 240
    height: int = 180
    duration_s: float = 2.0
    frame_hz: float = 30.0
    window_ms: float = 5.0
    target_count: int = 64
    mode: str = "ei"
    preset: str = "benchmark"
    seed: int = 0
    event_weights: str | None = None
    image_weights: str | None = None
    frame_join_ms: float | None = None
    event_msg: str = "dvs"
    event_rate_mev_s: float = 0.0
    event_runtime: str = "torch"
    event_onnx: str = ""


def bench_sequence(setup: BenchSetup, progress: bool = False) -> Any:
    """The synthetic Sequence of the setup (preset resized, frames at setup.frame_hz), with
    uniform random events added up to `event_rate_mev_s`."""
    from blinktrack_ros.synth.config import preset
    from blinktrack_ros.synth.sequence import generate_sequence

    config = replace(preset(setup.preset, setup.width, setup.height, setup.duration_s),
                     frame_hz=setup.frame_hz)
    seq = generate_sequence(config, setup.seed, progress=progress)
    extra = int(setup.event_rate_mev_s * 1e6 * setup.duration_s) - len(seq.events)
    if extra <= 0:
        return seq
    rng = np.random.default_rng(setup.seed + 1)
    # microsecond times (what evt3 carries), in (0, duration]
    t = (rng.integers(1, int(setup.duration_s * 1e6) + 1, extra) * 1000).astype(np.int64)
    noise = EventBatch(rng.integers(0, setup.width, extra).astype(np.uint16),
                       rng.integers(0, setup.height, extra).astype(np.uint16), t,
                       rng.integers(0, 2, extra).astype(np.uint8), setup.width, setup.height)
    merged = EventBatch.concatenate([seq.events, noise])
    order = np.argsort(merged.t, kind="stable")
    return replace(seq, events=EventBatch(merged.x[order], merged.y[order], merged.t[order],
                                          merged.p[order], setup.width, setup.height))


def bench_pipeline(setup: BenchSetup, max_pending_windows: int = 1 << 30,
                   untrained: bool | None = None) -> tuple[Pipeline, str]:
    """(Pipeline, weights note): lite weights when available, else random lite weights.

    untrained None tries the shipped weights first (random weights have the same speed);
    weights given in the setup must load.
    """
    if untrained is None and (setup.event_weights or setup.image_weights):
        untrained = False
    from blinktrack_ros.tracking.build import build_pipeline, event_source_options
    from blinktrack_ros.tracking.pipeline import Mode, PipelineConfig
    from blinktrack_ros.tracking.seeding import SeedConfig

    config = PipelineConfig(mode=Mode(setup.mode), event_window_ms=setup.window_ms,
                            max_pending_windows=max_pending_windows)
    kwargs = dict(seeding=SeedConfig(target_count=setup.target_count),
                  frame_join_ms=offline_frame_join_ms(setup.frame_join_ms),
                  event_weights=setup.event_weights, image_weights=setup.image_weights,
                  event_source=event_source_options(setup.event_runtime, setup.event_onnx))
    if not untrained:
        try:
            return build_pipeline(config, **kwargs), "lite weights"
        except FileNotFoundError as exc:
            if untrained is False:
                raise
            note = f"untrained lite networks ({exc})"
    else:
        note = "untrained lite networks"
    return build_pipeline(config, untrained=True, **kwargs), note


@dataclass
class CallTimes:
    """Wall times (s) of the pipeline calls: those that observed event windows, and frames
    (a frame on the worker: the call that submits it, and the wait at its join is in the
    event call that joins it)."""

    window_s: list[float] = field(default_factory=list)
    frame_s: list[float] = field(default_factory=list)
    other_s: list[float] = field(default_factory=list)  # event packets completing no window

    def run(self, pipe: Pipeline, item: EventBatch | tuple[int, np.ndarray]) -> list[Update]:
        """Feed one input (an EventBatch or (t_ns, gray)) and time the call."""
        t0 = time.perf_counter()
        if isinstance(item, EventBatch):
            windows = pipe.event.counts["windows"] if pipe.event is not None else 0
            updates = pipe.on_events(item)
            observed = pipe.event is not None and pipe.event.counts["windows"] > windows
            (self.window_s if observed else self.other_s).append(time.perf_counter() - t0)
        else:
            updates = pipe.on_image(*item)
            self.frame_s.append(time.perf_counter() - t0)
        return updates

    def figures(self) -> dict[str, float]:
        """Median and p99 in ms of windows and frames, and the counts."""
        out: dict[str, float] = {}
        for name, values in (("window", self.window_s), ("frame", self.frame_s)):
            ms = np.asarray(values) * 1e3
            out[f"{name}_calls"] = int(ms.size)
            out[f"{name}_ms_median"] = float(np.median(ms)) if ms.size else float("nan")
            out[f"{name}_ms_p99"] = float(np.percentile(ms, 99)) if ms.size else float("nan")
        out["event_packet_no_window_ms_median"] = float(np.median(self.other_s) * 1e3) \
            if self.other_s else float("nan")
        return out


def _core_inputs(seq: Any) -> Iterator[EventBatch | tuple[int, np.ndarray]]:
    from blinktrack_ros.tracking.offline import EventInput, interleave

    for item in interleave(seq.frames, seq.frame_times_ns, seq.events):
        yield item.batch if isinstance(item, EventInput) else (item.t_ns, item.gray)


def _drive(pipe: Pipeline, inputs: Iterable, times: CallTimes, total: int | None,
           progress: bool, desc: str, on_updates: Any = None) -> tuple[float, float, float]:
    """Feed every input; returns (wall s, process CPU s, this thread's CPU s)."""
    from tqdm import tqdm

    t0, cpu0, thread0 = time.perf_counter(), time.process_time(), time.thread_time()
    for item in tqdm(inputs, total=total, unit="msg", desc=desc, disable=not progress,
                     leave=False):
        updates = times.run(pipe, item)
        if on_updates is not None:
            on_updates(updates)
    updates = pipe.flush()
    if on_updates is not None:
        on_updates(updates)
    return (time.perf_counter() - t0, time.process_time() - cpu0,
            time.thread_time() - thread0)


def warm_up(seq: Any, pipe: Pipeline, seconds: float = 0.2) -> None:
    """Run the first `seconds` of the sequence through the pipeline to be measured, then
    reset it (tracks and buffers dropped; its networks, traces and kernels kept). The first
    calls create oneDNN kernels, and the first tracked frame traces the image network's
    refinement steps (about 0.1 s, once per pipeline): one-off costs that neither figure
    should carry (they are 5 % of a 2 s run, not of a replayed recording)."""
    end_ns = int(seconds * 1e9)
    for item in _core_inputs(seq):
        t_ns = int(item.t[-1]) if isinstance(item, EventBatch) else item[0]
        if t_ns > end_ns:
            break
        CallTimes().run(pipe, item)
    pipe.flush()
    pipe.reset("bench warm-up")


def _time_parts(pipe: Pipeline) -> dict[str, list[float]]:
    """Wrap the event path's parts (instance attributes, this pipeline only) to record their
    CPU times (s, of the calling thread: robust to other load): SBT-Max patches, the event
    source's observe (patches + network + output), and the fusion of each observation array."""
    parts: dict[str, list[float]] = {"sbt": [], "event_observe": [], "fusion": []}

    def timed(fn: Any, key: str) -> Any:
        def call(*args: Any, **kwargs: Any) -> Any:
            t0 = time.thread_time()
            out = fn(*args, **kwargs)
            parts[key].append(time.thread_time() - t0)
            return out
        return call

    source = pipe.event_source
    if source is not None and hasattr(source, "_patch_fn"):
        from blinktrack_ros.events.sbt import sbt_max_patches

        source._patch_fn = timed(source._patch_fn or sbt_max_patches, "sbt")
        source.observe = timed(source.observe, "event_observe")
    pipe.fusion.on_observations = timed(pipe.fusion.on_observations, "fusion")
    return parts


def pipeline_figures(seq: Any, pipe: Pipeline, progress: bool = False) -> dict[str, float]:
    """The Pipeline alone on the in-memory sequence: real-time factor, per-call times, and the
    event window's parts (median CPU ms: patches, network call with its Python, one fusion)."""
    inputs = list(_core_inputs(seq))
    times = CallTimes()
    born0 = int(pipe.stats.tracks_born)  # a warmed-up pipeline counts its warm-up births
    parts = _time_parts(pipe)
    wall, cpu, main_cpu = _drive(pipe, inputs, times, len(inputs), progress, "pipeline")
    part_ms = {f"{k}_cpu_ms_median": float(np.median(v) * 1e3) for k, v in parts.items() if v}
    if parts["sbt"] and parts["event_observe"]:
        part_ms["event_network_call_cpu_ms_median"] = float(np.median(
            np.subtract(parts["event_observe"], parts["sbt"])) * 1e3)
    data_s = seq.config.duration_s
    # the busier of the calling thread and the frame worker bounds the speed on two free cores
    busiest = max(main_cpu, cpu - main_cpu)
    return {"pipeline_realtime_factor": data_s / wall, "pipeline_wall_s": wall,
            "pipeline_realtime_factor_cpu": data_s / cpu,
            "pipeline_main_thread_cpu_share": main_cpu / cpu,
            "pipeline_realtime_factor_two_free_cores": data_s / busiest,
            **times.figures(), **part_ms,
            "tracks_alive_final": int(pipe.engine.snapshot(0).ids.size),
            "tracks_born": int(pipe.stats.tracks_born) - born0}


def replay_figures(seq: Any, pipe: Pipeline, workdir: Path, progress: bool = False,
                   event_msg: str = "dvs") -> dict[str, float]:
    """The whole replay (bag read + decode + pipeline + bag write) of the sequence's bag."""
    from blinktrack_ros.bag.core import GrayFrame, iter_core
    from blinktrack_ros.bag.replay import (
        JOIN_PACKETS,
        OBSERVATION_TOPIC,
        TRACKS_TOPIC,
        observation_array,
        track_array,
    )
    from blinktrack_ros.bag.types import OBSERVATION_ARRAY, TRACK_ARRAY, typestore
    from blinktrack_ros.bag.writer import BagWriter
    from blinktrack_ros.synth.bagout import (
        DVS_TOPIC,
        IMAGE_TOPIC,
        PACKET_TOPIC,
        write_sequence_bag,
    )

    bag_in, bag_out = Path(workdir) / "input", Path(workdir) / "output"
    counts = write_sequence_bag(seq, bag_in, event_msg=event_msg)
    event_topic = DVS_TOPIC if event_msg == "dvs" else PACKET_TOPIC
    total = counts.get(event_topic, 0) + counts.get(IMAGE_TOPIC, 0)
    store, times, decode_stats = typestore(), CallTimes(), {}

    def core_items():
        for m in iter_core(bag_in, topics=[event_topic, IMAGE_TOPIC], stats=decode_stats,
                           join_packets=JOIN_PACKETS):
            if isinstance(m.value, EventBatch):
                yield m.value
            elif isinstance(m.value, GrayFrame):
                yield (m.value.t_ns, m.value.gray)

    with BagWriter(bag_out) as writer:
        def write(updates: list[Update]) -> None:
            for u in updates:
                writer.write(TRACKS_TOPIC, TRACK_ARRAY, u.tracks.t_ns,
                             track_array(store, u.tracks, "camera"))
                if u.observations is not None:
                    topic = OBSERVATION_TOPIC.format(source=u.observations.source.name.lower())
                    writer.write(topic, OBSERVATION_ARRAY, u.observations.t_ns,
                                 observation_array(store, u.observations, "camera"))

        t0, cpu0 = time.perf_counter(), time.process_time()
        # evt3 packets arrive joined (fewer items than messages): no total for the bar then
        _drive(pipe, core_items(), times, total if event_msg == "dvs" else None, progress,
               "replay", write)
    wall = time.perf_counter() - t0  # closing the writer (flush) included
    cpu = time.process_time() - cpu0
    pipeline_s = sum(times.window_s) + sum(times.frame_s) + sum(times.other_s)
    return {"replay_realtime_factor": seq.config.duration_s / wall, "replay_wall_s": wall,
            "replay_realtime_factor_cpu": seq.config.duration_s / cpu,
            "replay_pipeline_share": pipeline_s / wall, "replay_messages_in": int(total),
            "replay_events_decoded": int(sum(v.decoded for v in decode_stats.values())),
            "replay_events_dropped_by_decoder": int(sum(
                v.dropped_out_of_bounds for v in decode_stats.values()))}
