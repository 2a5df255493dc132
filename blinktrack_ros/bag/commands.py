"""`blinktrack info BAG [--events] [--json]`: what a bag holds, and its events decoded."""

from __future__ import annotations

import argparse
from datetime import datetime, timezone
import json
from pathlib import Path
import sys

from blinktrack_ros.cli import UsageError

BAG_HELP = "a ROS 2 bag directory, an .mcap or .db3 file, or a ROS 1 .bag file"


def register(sub: argparse._SubParsersAction) -> None:
    """Add `blinktrack info`."""
    p = sub.add_parser("info", help="topics, types, counts and time span of a bag",
                       description="Print a bag's topics, message types, counts and time span; "
                                   "with --events decode every event message.")
    p.add_argument("bag", metavar="BAG", help=BAG_HELP)
    p.add_argument("--events", action="store_true",
                   help="decode every event message: total events, ON/OFF, sensor size, "
                        "decode speed")
    p.add_argument("--json", action="store_true", help="print one JSON object instead")
    p.set_defaults(func=run_info)


def _stamp(t_ns: int | None) -> str:
    if t_ns is None:
        return "-"
    sec, nsec = divmod(int(t_ns), 1_000_000_000)
    utc = datetime.fromtimestamp(sec, tz=timezone.utc)
    return f"{sec}.{nsec:09d} s ({utc:%Y-%m-%d %H:%M:%S} UTC)"


def _summary_lines(summary: dict) -> list[str]:
    lines = [
        f"bag:       {summary['path']} ({summary['storage']})",
        f"messages:  {summary['message_count']}",
        f"start:     {_stamp(summary['start_ns'])}",
        f"end:       {_stamp(summary['end_ns'])}",
        "duration:  " + ("-" if summary["duration_s"] is None
                         else f"{summary['duration_s']:.3f} s"),
        "topics:",
    ]
    width = max((len(t) for t in summary["topics"]), default=0)
    for topic, info in summary["topics"].items():
        lines.append(f"  {topic:<{width}}  {info['count']:>8}  {info['type']}")
    return lines


def _error_lines(topic: str, res: dict) -> list[str]:
    from blinktrack_ros.events.decode import SUPPORTED_ENCODINGS

    lines = []
    for encoding, n in res["unsupported_encodings"].items():
        lines.append(f"events: unsupported encoding {encoding!r} on {topic}: {n} of "
                     f"{res['messages']} messages not decoded (supported: "
                     f"{', '.join(SUPPORTED_ENCODINGS)})")
    if res["undecodable_messages"]:
        lines.append(f"events: {res['undecodable_messages']} messages on {topic} do not "
                     "deserialize (corrupt), skipped")
    if res["truncated_messages"]:
        lines.append(f"events: {res['truncated_messages']} truncated messages on {topic} "
                     "skipped (payload ends early)")
    return lines


def _event_lines(topic: str, res: dict) -> list[str]:
    speed = res["decode_mev_per_s"]
    lines = [
        f"events on {topic} ({res['type']}):",
        f"  messages decoded: {res['decoded_messages']} of {res['messages']}",
        f"  events:      {res['events']}  (ON {res['on']}, OFF {res['off']})",
        f"  sensor size: {res['width_px']} x {res['height_px']}",
        "  decode speed: " + ("-" if speed is None else
                              f"{speed:.1f} Mev/s (decoder only: {res['decode_s'] * 1e3:.1f} ms)"),
    ]
    if res["t_first_ns"] is not None:
        span = (res["t_last_ns"] - res["t_first_ns"]) / 1e9
        lines.append(f"  event time:  {_stamp(res['t_first_ns'])} + {span:.6f} s")
    if res["counters"]:
        shown = ", ".join(f"{k} {v}" for k, v in res["counters"].items()
                          if k not in ("packets", "decoded", "on", "off"))
        if shown:
            lines.append(f"  validation:  {shown}")
    return lines


def run_info(args: argparse.Namespace) -> int:
    """Print the bag summary (and decoded events); 1 if some event messages did not decode."""
    from blinktrack_ros.bag.reader import BagError, bag_summary

    path = Path(args.bag)
    if not path.exists():
        raise UsageError(f"bag not found: {path}; give {BAG_HELP}")
    try:
        summary = bag_summary(path)
    except BagError as exc:
        raise UsageError(f"{exc}; give {BAG_HELP}") from None
    errors: list[str] = []
    events: dict[str, dict] = {}
    if args.events:
        from blinktrack_ros.bag.eventstats import decode_bag_events

        events = {t: r.as_dict() for t, r in decode_bag_events(path).items()}
        if not events:
            errors.append("events: the bag has no event topic (event_camera_msgs/EventPacket, "
                          "event_array_msgs/EventArray, dvs_msgs/EventArray)")
        for topic, res in events.items():
            errors.extend(_error_lines(topic, res))
    if args.json:
        print(json.dumps({**summary, **({"events": events} if args.events else {}),
                          "errors": errors}, indent=2))
    else:
        lines = _summary_lines(summary)
        for topic, res in events.items():
            lines.extend(_event_lines(topic, res))
        print("\n".join(lines))
    for line in errors:
        print(f"blinktrack info: {line}", file=sys.stderr)
    return 1 if errors else 0
