"""The `blinktrack` command: parses arguments and calls library functions.

Each area registers its own sub-commands in a `commands` module (`register(sub)` for top-level
verbs, `register_bench(bench_sub)` for `blinktrack bench <what>`). Those modules import heavy
dependencies (torch, rosbags) inside the command functions, so `blinktrack --help` stays fast.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
import importlib
import os
import pickle
import sys

COMMAND_MODULES = (
    "blinktrack_ros.bag.commands",
    "blinktrack_ros.bag.replay",
    "blinktrack_ros.bench.events",
    "blinktrack_ros.bench.fusion",
    "blinktrack_ros.models.commands",
    "blinktrack_ros.bench.event_net",
    "blinktrack_ros.bench.image_net",
    "blinktrack_ros.synth.commands",
    "blinktrack_ros.eval.commands",
    "blinktrack_ros.eval.realcheck",
    "blinktrack_ros.train.commands",
    "blinktrack_ros.demo",
    "blinktrack_ros.bench.pipeline",
    "blinktrack_ros.bench.reliability",
    "blinktrack_ros.bench.runtimes",
    "blinktrack_ros.bench.synth",
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


TRACEBACK_ENV = "BLINKTRACK_TRACEBACK"  # set to 1 to see the traceback behind an error message


def _command_name(args: argparse.Namespace) -> str:
    """`bench events`, `train event`, `track`, ...: the words the user typed."""
    words = [args.command]
    for attr in ("bench_what", "train_what"):
        if getattr(args, attr, None):
            words.append(getattr(args, attr))
    return " ".join(words)


def _error_message(exc: Exception, command: str) -> str:
    """One line for an exception a command let through: what went wrong and the fix."""
    from blinktrack_ros.models.checkpoint import CheckpointError

    help_hint = f"see `blinktrack {command} --help`"
    text = _first_line(str(exc))
    if isinstance(exc, FileNotFoundError):
        name = exc.filename or str(exc)
        return f"no such file or folder: {name} (fix: check the path; {help_hint})"
    if isinstance(exc, (IsADirectoryError, NotADirectoryError, PermissionError)):
        return f"cannot use {exc.filename}: {exc.strerror} (fix: check the path; {help_hint})"
    if isinstance(exc, CheckpointError):
        return (f"{text} (fix: give a checkpoint written by `blinktrack train ... --export` or "
                "`blinktrack convert-official`, or omit the option to use the shipped weights)")
    if isinstance(exc, pickle.UnpicklingError):  # torch.load(weights_only=True): not a checkpoint
        return (f"not a readable checkpoint ({text}) (fix: give a file written by `blinktrack "
                "train ... --export` or `blinktrack convert-official`)")
    return f"{text} (fix: check the arguments; {help_hint})"


def _first_line(text: str, limit: int = 160) -> str:
    """The first line of an exception text, shortened (torch.load's are pages long)."""
    lines = text.strip().splitlines()
    line = lines[0] if lines else "unknown error"
    more = len(lines) > 1 or len(line) > limit
    return line[:limit].rstrip() + (" ..." if more else "")


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `blinktrack` console script.

    Wrong usage (argparse) prints the usage and returns 2, --help returns 0. A command's user
    mistakes (UsageError) are printed as one line, exit status 2. A missing
    file, an unusable checkpoint or a bad value that a command did not turn into a UsageError
    (FileNotFoundError, other OSErrors about a path, ValueError incl. CheckpointError,
    pickle.UnpicklingError from torch.load) is printed the same way with a fix; set
    BLINKTRACK_TRACEBACK=1 to get the traceback instead. So is an error of the rosbags reader (an
    unreadable input bag). Anything else is a bug and keeps its traceback.
    """
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # argparse printed usage + error (2) or --help (0)
        return exc.code if isinstance(exc.code, int) else 2
    if not hasattr(args, "func"):
        parser.print_help(sys.stderr)
        return 2
    command = _command_name(args)
    try:
        result = args.func(args)
    except UsageError as exc:
        text = str(exc)  # one line: a wrapped library message (torch.load's) can be a page
        if "\n" in text:
            text = _first_line(text, 200)
        print(f"blinktrack {command}: error: {text}", file=sys.stderr)
        return 2
    except (FileNotFoundError, IsADirectoryError, NotADirectoryError, PermissionError,
            ValueError, pickle.UnpicklingError) as exc:
        if os.environ.get(TRACEBACK_ENV):
            raise
        print(f"blinktrack {command}: error: {_error_message(exc, command)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # `blinktrack info BAG | head`
        sys.stderr.close()
        return 0
    except Exception as exc:
        # rosbags' errors (AnyReaderError, ReaderError, WriterError) concern the user's bags
        if os.environ.get(TRACEBACK_ENV) or not type(exc).__module__.startswith("rosbags"):
            raise
        if "Writer" in type(exc).__name__:
            print(f"blinktrack {command}: error: cannot write {getattr(args, 'out', 'the bag')}: "
                  f"{_first_line(str(exc))} (fix: choose a new output path)", file=sys.stderr)
            return 2
        bag = getattr(args, "bag", None) or getattr(args, "data", None) or "the bag"
        print(f"blinktrack {command}: error: cannot read {bag}: {_first_line(str(exc))} (fix: "
              "give a ROS 2 bag folder, an .mcap or .db3 file, or a ROS 1 .bag; check it with "
              "`blinktrack info BAG`)", file=sys.stderr)
        return 2
    return int(result or 0)


if __name__ == "__main__":
    # `python -m blinktrack_ros.cli`: run the imported module's main, so that the UsageError the
    # commands raise (blinktrack_ros.cli.UsageError) is the class caught there, not __main__'s.
    from blinktrack_ros.cli import main as _main

    sys.exit(_main())
