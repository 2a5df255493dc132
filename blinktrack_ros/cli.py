"""The `blinktrack` command: parses arguments and calls library functions.

Each area registers its own sub-commands in a `commands` module (`register(sub)` for top-level
verbs, `register_bench(bench_sub)` for `blinktrack bench <what>`). Those modules import heavy
dependencies (torch, rosbags) inside the command functions, so `blinktrack --help` stays fast.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
import importlib
import sys

COMMAND_MODULES = (
    "blinktrack_ros.bag.commands",
    "blinktrack_ros.bag.replay",
    "blinktrack_ros.events.commands",
    "blinktrack_ros.tracking.commands",
    "blinktrack_ros.models.commands",
    "blinktrack_ros.models.event_commands",
    "blinktrack_ros.models.image_commands",
    "blinktrack_ros.synth.commands",
    "blinktrack_ros.eval.commands",
    "blinktrack_ros.train.commands",
    "blinktrack_ros.demo",
    "blinktrack_ros.benchpipeline",
)


class UsageError(Exception):
    """A user mistake (missing file, bad option value): printed without a traceback."""


def build_parser() -> argparse.ArgumentParser:
    """Assemble the parser from every area's commands module."""
    parser = argparse.ArgumentParser(
        prog="blinktrack",
        description="Event + frame feature tracking with Kalman fusion (BlinkTrack) for ROS 2.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    bench = sub.add_parser("bench", help="speed benchmarks that print figures (--json for JSON)")
    bench_sub = bench.add_subparsers(dest="bench_what", metavar="WHAT")
    bench.set_defaults(func=lambda args: _missing_sub(bench))
    for name in COMMAND_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name != name:  # a real missing dependency inside the module: let it surface
                raise
            continue
        if hasattr(module, "register"):
            module.register(sub)
        if hasattr(module, "register_bench"):
            module.register_bench(bench_sub)
    return parser


def _missing_sub(parser: argparse.ArgumentParser) -> int:
    parser.print_help(sys.stderr)
    return 2


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `blinktrack` console script."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if not hasattr(args, "func"):
        parser.print_help(sys.stderr)
        return 2
    try:
        result = args.func(args)
    except UsageError as exc:
        print(f"blinktrack {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # `blinktrack info BAG | head`
        sys.stderr.close()
        return 0
    return int(result or 0)


if __name__ == "__main__":
    sys.exit(main())
