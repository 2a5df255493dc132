"""`blinktrack bench events`: decode speeds (evt3, mono, dvs raw), SBT-Max patch time (medians)."""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from blinktrack_ros.bench.util import time_calls
from blinktrack_ros.events import sbt_jit
from blinktrack_ros.events.batch import EventBatch
from blinktrack_ros.events.decode import (
    DecodeStats,
    decode_dvs_cdr,
    decode_packet,
    decode_packets,
    prepare_evt3_backend,
)
from blinktrack_ros.events.encode import make_event_packets, serialize_dvs_event_array
from blinktrack_ros.events.sbt import sbt_max_patches

DEFAULT_BAG = Path(__file__).resolve().parents[2].parent / "shared/data/event_bags/test_events_1"
RATE_EV_PER_S = 10_000_000  # the synthetic stream: 10 Mev/s on a 640x480 sensor
W, H = 640, 480


def synthetic_stream(seconds: float, seed: int = 0) -> EventBatch:
    """Uniform random events at RATE_EV_PER_S, microsecond times (evt3 resolution)."""
    rng = np.random.default_rng(seed)
    n = int(RATE_EV_PER_S * seconds)
    t = 1_700_000_000_000_000_000 + np.sort(rng.integers(0, int(seconds * 1e9), n)) // 1000 * 1000
    return EventBatch(rng.integers(0, W, n).astype(np.uint16),
                      rng.integers(0, H, n).astype(np.uint16), t.astype(np.int64),
                      rng.integers(0, 2, n).astype(np.uint8), W, H)


def read_packets(bag: Path) -> list:
    """EventPacket messages of a bag (rosbags objects, numpy payloads)."""
    from rosbags.highlevel import AnyReader

    from blinktrack_ros.bag.types import typestore

    with AnyReader([bag], default_typestore=typestore()) as reader:
        conns = [c for c in reader.connections if c.msgtype.endswith("/EventPacket")]
        return [reader.deserialize(raw, c.msgtype) for c, _, raw in reader.messages(conns)]


def _per_packet(msgs: list, backend: str):
    stats = DecodeStats()

    def run() -> None:
        state = None
        for m in msgs:
            _, state = decode_packet(m, state, stats, backend)
    return run


def evt3_figures(msgs: list, repeats: int) -> dict:
    """evt3 Mev/s from the message objects: ours (each backend) and the bare PyPI decoder."""
    import evt3

    width, height = int(msgs[0].width), int(msgs[0].height)
    n = sum(len(decode_packet(m, s, None, "numpy")[0]) for m, s in _states(msgs))
    figures = {"evt3_events": n, "evt3_packets": len(msgs)}

    def pypi_bare() -> None:
        dec = evt3.Decoder(width, height)
        for m in msgs:
            dec.feed(np.asarray(m.events).tobytes())

    def runs_of(k: int):  # what a bag replay decodes (bag.replay.JOIN_PACKETS)
        def run() -> None:
            state = None
            for i in range(0, len(msgs), k):
                _, state = decode_packets(msgs[i:i + k], state)
        return run

    figures["evt3_backend"] = prepare_evt3_backend("auto")  # compiled before the timing
    runs = {"evt3_decode_mev_per_s": _per_packet(msgs, "auto"),
            "evt3_pypi_backend_decode_mev_per_s": _per_packet(msgs, "pypi"),
            "evt3_runs_of_32_mev_per_s": runs_of(32),
            "evt3_numpy_decode_mev_per_s": _per_packet(msgs, "numpy"),
            "evt3_numpy_joined_mev_per_s": lambda: decode_packets(msgs, None, None, "numpy"),
            "evt3_pypi_joined_mev_per_s": lambda: decode_packets(msgs, None, None, "pypi"),
            "evt3_pypi_package_bare_mev_per_s": pypi_bare}
    for key, fn in runs.items():
        figures[key] = n / float(np.median(time_calls(fn, repeats))) / 1e6
    bare = figures["evt3_pypi_package_bare_mev_per_s"]
    figures["evt3_ratio_ours_to_pypi_package"] = figures["evt3_decode_mev_per_s"] / bare
    figures["evt3_ratio_pypi_backend_to_pypi_package"] = (
        figures["evt3_pypi_backend_decode_mev_per_s"] / bare)
    figures["evt3_ratio_numpy_to_pypi_package"] = figures["evt3_numpy_decode_mev_per_s"] / bare
    figures["evt3_ratio_runs_of_32_to_pypi_package"] = figures["evt3_runs_of_32_mev_per_s"] / bare
    return figures


def _states(msgs: list):
    """(message, decoder state before it) pairs of the numpy backend."""
    state = None
    for m in msgs:
        yield m, state
        _, state = decode_packet(m, state, None, "numpy")


def mono_dvs_figures(stream: EventBatch, packet_ns: int, repeats: int) -> dict:
    """mono (EventPacket) and dvs raw CDR decode Mev/s on packets of the synthetic stream."""
    mono = make_event_packets(stream, "mono", packet_ns)
    cuts = np.searchsorted(stream.t, np.arange(int(stream.t[0]), int(stream.t[-1]) + packet_ns,
                                               packet_ns)[1:])
    parts = np.split(np.arange(len(stream)), cuts)
    dvs = [serialize_dvs_event_array(EventBatch(stream.x[i], stream.y[i], stream.t[i],
                                                stream.p[i], W, H), int(stream.t[i[0]]))
           for i in parts if i.size]
    n = len(stream)
    mono_s = np.median(time_calls(_per_packet(mono, "auto"), repeats))
    dvs_s = np.median(time_calls(lambda: [decode_dvs_cdr(b) for b in dvs], repeats))
    return {"mono_decode_mev_per_s": n / mono_s / 1e6, "dvs_raw_decode_mev_per_s": n / dvs_s / 1e6,
            "synthetic_packet_events": int(n // max(len(dvs), 1))}


def sbt_figures(stream: EventBatch, repeats: int, tracks: int = 64, window_ns: int = 5_000_000):
    """SBT-Max patch time for `tracks` tracks over a window of the synthetic stream."""
    rng = np.random.default_rng(1)
    centres = np.c_[rng.uniform(0, W, tracks), rng.uniform(0, H, tracks)]
    t1 = int(stream.t[0]) + 2 * window_ns
    n_window = len(stream.slice_time(t1 - window_ns, t1))
    s = np.median(time_calls(lambda: sbt_max_patches(stream, t1, window_ns, centres),
                             repeats * 4))
    buf = np.empty(tracks * 10 * 62 * 62 + 1, np.float32)
    s_buf, s_np = (np.median(time_calls(
        lambda c=compiled: sbt_max_patches(stream, t1, window_ns, centres, out=buf, compiled=c),
        repeats * 4)) for compiled in (True, False))
    return {"sbt_compiled": sbt_jit.available(), "sbt_patches_ms": s * 1e3,
            "sbt_patches_reused_out_ms": s_buf * 1e3,
            "sbt_patches_reused_out_numpy_code_ms": s_np * 1e3,
            "sbt_tracks": tracks, "sbt_window_events": n_window}


def bench_events(bag: Path | None = None, repeats: int = 5) -> dict:
    """All figures of `blinktrack bench events` (medians over `repeats` runs)."""
    bag = DEFAULT_BAG if bag is None else bag
    figures: dict = {}
    if bag.exists():
        figures["evt3_bag"] = bag.name
        figures.update(evt3_figures(read_packets(bag), repeats))
    else:
        figures["evt3_bag"] = f"absent ({bag}); synthetic 10 Mev/s stream, 1 ms packets"
        stream = synthetic_stream(0.05)
        figures.update(evt3_figures(make_event_packets(stream, "evt3", 1_000_000), repeats))
    stream = synthetic_stream(0.1)
    evt3_1ms = make_event_packets(stream, "evt3", 1_000_000)
    figures["evt3_synthetic_1ms_packets_mev_per_s"] = len(stream) / float(
        np.median(time_calls(_per_packet(evt3_1ms, "auto"), repeats))) / 1e6
    figures.update(mono_dvs_figures(stream, 1_000_000, repeats))
    figures.update(sbt_figures(stream, repeats))
    return figures


def register_bench(bench_sub: argparse._SubParsersAction) -> None:
    """Add `blinktrack bench events`."""
    p = bench_sub.add_parser(
        "events", help="event decode Mev/s (evt3 ours vs PyPI evt3, mono, dvs raw) and "
                       "SBT-Max patches ms (64 tracks, 5 ms of a 10 Mev/s stream)")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument("--bag", type=Path, default=None,
                   help="evt3 EventPacket bag (default: ../shared/data/event_bags/test_events_1; "
                        "a synthetic stream when absent)")
    p.add_argument("--repeats", type=int, default=5, help="timed runs per figure (median)")
    p.set_defaults(func=_bench)


def _bench(args: argparse.Namespace) -> int:
    from blinktrack_ros.bench.util import report
    from blinktrack_ros.cli import UsageError

    if args.bag is not None and not args.bag.exists():
        raise UsageError(f"{args.bag}: no such bag (omit --bag to use the default)")
    if args.repeats < 1:
        raise UsageError("--repeats must be at least 1")
    report("events", bench_events(args.bag, args.repeats), args.json)
    return 0
