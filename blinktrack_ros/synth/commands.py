"""`blinktrack synth` (write synthetic bags + ground truth) and `blinktrack bench synth`."""

from __future__ import annotations

import argparse
from pathlib import Path


def _size(text: str) -> tuple[int, int]:
    try:
        w, h = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"size {text!r} is not WxH, e.g. 240x180") from None
    return w, h


def register(sub: argparse._SubParsersAction) -> None:
    """Add the synth command."""
    p = sub.add_parser("synth", help="write synthetic event+frame bags with exact ground truth")
    p.add_argument("--out", type=Path, required=True, help="output folder (created)")
    p.add_argument("--sequences", type=int, default=1, help="number of sequences")
    p.add_argument("--seed", type=int, default=0, help="base seed (same seed, same bytes)")
    p.add_argument("--preset", default="train", choices=_preset_names(),
                   help="scene and motion preset")
    p.add_argument("--textures", type=Path, help="folder of images (default: scikit-image's)")
    p.add_argument("--size", type=_size, help="WxH (default: the preset's, 240x180)")
    p.add_argument("--duration", type=float, help="seconds per sequence (default 1)")
    p.add_argument("--event-msg", choices=("dvs", "evt3", "mono"), default="dvs",
                   help="dvs_msgs/EventArray, or event_camera_msgs/EventPacket evt3 / mono")
    p.set_defaults(func=_synth)


def _preset_names() -> list[str]:
    from blinktrack_ros.synth.config import PRESETS

    return list(PRESETS)


def sequence_seed(seed: int, index: int, preset_name: str) -> int:
    """The seed of sequence `index` of a preset: independent streams per preset and index."""
    import zlib

    import numpy as np

    key = zlib.crc32(preset_name.encode())
    return int(np.random.SeedSequence([seed, index, key]).generate_state(1)[0])


def _config(args: argparse.Namespace):
    from blinktrack_ros.cli import UsageError
    from blinktrack_ros.synth.config import preset

    w, h = args.size if args.size else (None, None)
    try:
        config = preset(args.preset, w, h, args.duration)
        config.validate()
    except (KeyError, ValueError) as exc:
        raise UsageError(str(exc).strip("'\"")) from None
    return config


def _synth(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from blinktrack_ros.cli import UsageError
    from blinktrack_ros.synth.bagout import write_sequence_bag
    from blinktrack_ros.synth.sequence import generate_sequence
    from blinktrack_ros.synth.textures import load_textures

    if args.sequences < 1 or args.seed < 0:
        raise UsageError("--sequences must be >= 1 and --seed >= 0")
    config = _config(args)
    try:
        textures = load_textures(args.textures)
    except (FileNotFoundError, ValueError) as exc:
        raise UsageError(f"--textures: {exc}") from None
    args.out.mkdir(parents=True, exist_ok=True)
    names = [f"{args.preset}_s{args.seed}_{i:04d}" for i in range(args.sequences)]
    taken = [n for n in names if (args.out / n).exists()]
    if taken:
        raise UsageError(f"{args.out / taken[0]} exists: choose another --out or --seed")
    for i, name in enumerate(tqdm(names, desc="sequences", unit="seq")):
        seq = generate_sequence(config, sequence_seed(args.seed, i, args.preset), textures,
                                progress=True)
        counts = write_sequence_bag(seq, args.out / name, args.event_msg, progress=True)
        tqdm.write(f"{name}: {len(seq.events)} events, {len(seq.frames)} frames, "
                   f"{seq.gt.ids.size} GT tracks, {sum(counts.values())} messages")
    return 0


def register_bench(bench_sub: argparse._SubParsersAction) -> None:
    """Add `blinktrack bench synth`."""
    p = bench_sub.add_parser("synth", help="seconds to generate 1 s of synthetic sequence")
    p.add_argument("--sizes", type=_size, nargs="+", default=[(240, 180), (640, 480)],
                   help="WxH sizes to time")
    p.add_argument("--duration", type=float, default=0.5, help="seconds of sequence per run")
    p.add_argument("--repeats", type=int, default=1)
    p.add_argument("--preset", default="benchmark", choices=_preset_names())
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=_bench)


def _bench(args: argparse.Namespace) -> int:
    from blinktrack_ros.benchutil import report, time_calls
    from blinktrack_ros.synth.config import preset
    from blinktrack_ros.synth.sequence import generate_sequence
    from blinktrack_ros.synth.textures import load_textures

    textures = load_textures()
    figures: dict[str, object] = {"preset": args.preset, "sequence_s": args.duration}
    for w, h in args.sizes:
        config = preset(args.preset, w, h, args.duration)
        out = {}

        def run(config=config, out=out):
            out["seq"] = generate_sequence(config, 0, textures)

        times = time_calls(run, args.repeats, warmup=0)
        per_s = float(times.min()) / args.duration
        figures[f"{w}x{h}_s_per_sequence_s"] = per_s
        figures[f"{w}x{h}_events_per_sequence_s"] = len(out["seq"].events) / args.duration
    report("synth: generate_sequence (render 1 kHz + ESIM + frames + GT)", figures, args.json)
    return 0
