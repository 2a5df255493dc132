"""`blinktrack convert-official`: the authors' published weights -> our checkpoint files."""

from __future__ import annotations

import argparse
from pathlib import Path


def register(sub: argparse._SubParsersAction) -> None:
    """Add the convert-official command."""
    p = sub.add_parser("convert-official",
                       help="convert the authors' event (.ckpt) or image (.pth) weights")
    p.add_argument("--event", type=Path, help="official event module checkpoint (Lightning .ckpt)")
    p.add_argument("--image", type=Path, help="official image module weights (.pth state_dict)")
    p.add_argument("--out", type=Path, required=True, help="output checkpoint file")
    p.set_defaults(func=_convert)


def _convert(args: argparse.Namespace) -> int:
    from blinktrack_ros.cli import UsageError

    if (args.event is None) == (args.image is None):
        raise UsageError("give exactly one of --event FILE or --image FILE")
    src = args.event or args.image
    if not src.is_file():
        raise UsageError(f"{src}: no such file")
    if args.event is not None:
        from blinktrack_ros.models.event_convert import convert_event_checkpoint as convert
    else:
        from blinktrack_ros.models.image_convert import convert_image_checkpoint as convert
    from blinktrack_ros.models.checkpoint import CheckpointError

    try:
        convert(src, args.out)
    except CheckpointError as exc:
        raise UsageError(str(exc)) from None
    print(f"wrote {args.out}")
    return 0
