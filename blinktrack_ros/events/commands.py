"""`blinktrack bench events`: decode speeds (evt3, mono, dvs raw) and SBT-Max patch time."""

from __future__ import annotations

import argparse
from pathlib import Path


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
    from blinktrack_ros.benchutil import report
    from blinktrack_ros.cli import UsageError
    from blinktrack_ros.events.bench import bench_events

    if args.bag is not None and not args.bag.exists():
        raise UsageError(f"{args.bag}: no such bag (omit --bag to use the default)")
    if args.repeats < 1:
        raise UsageError("--repeats must be at least 1")
    report("events", bench_events(args.bag, args.repeats), args.json)
    return 0
