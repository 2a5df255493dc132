"""`blinktrack bench synth`: seconds of compute per second of synthetic sequence."""

from __future__ import annotations

import argparse

from blinktrack_ros.synth.commands import _preset_names, _size


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
    from blinktrack_ros.bench.util import report, time_calls
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
