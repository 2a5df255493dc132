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
    p = sub.add_parser(
        "synth", help="write synthetic event+frame bags with exact ground truth",
        description="Synthetic sequences (--preset), the fixed challenge test set (--suite "
                    "challenge: every preset of the suite, fixed test seeds, held-out "
                    "textures), or a test sequence from real high-frame-rate video "
                    "(--from-video DIR).")
    p.add_argument("--out", type=Path, required=True, help="output folder (created)")
    p.add_argument("--sequences", type=int, default=None,
                   help="number of sequences (per preset with --suite; default 1, suite 3)")
    p.add_argument("--seed", type=int, default=None,
                   help=f"base seed (same seed, same bytes; default 0, suite {SUITE_SEED})")
    p.add_argument("--preset", default="train", choices=_preset_names(),
                   help="scene and motion preset")
    p.add_argument("--suite", choices=_suite_names(),
                   help="write every preset of the suite (the test set)")
    p.add_argument("--from-video", type=Path, metavar="DIR",
                   help="frames + timestamps.txt (or images.txt) of a high-frame-rate video")
    p.add_argument("--frame-hz", type=float, default=22.0,
                   help="--from-video: APS frame rate (default 22)")
    p.add_argument("--exposure-ms", type=float, default=15.0,
                   help="--from-video: APS exposure (default 15 ms)")
    p.add_argument("--upsample", type=int, default=1,
                   help="--from-video: flow-interpolated frames per interval for ESIM")
    p.add_argument("--split", choices=("train", "test"), default=None,
                   help="texture split of the sensor presets (default: test for --suite and "
                        "plain synth; training code uses train)")
    p.add_argument("--textures", type=Path, help="folder of images (default: scikit-image's)")
    p.add_argument("--size", type=_size, help="WxH (default: the preset's, 240x180)")
    p.add_argument("--duration", type=float, help="seconds per sequence (default 1)")
    p.add_argument("--event-msg", choices=("dvs", "evt3", "mono"), default="dvs",
                   help="dvs_msgs/EventArray, or event_camera_msgs/EventPacket evt3 / mono")
    p.set_defaults(func=_synth)


SUITE_SEED = 2027  # the challenge suite's fixed test seeds (KLT is tuned on other seeds)


def _preset_names() -> list[str]:
    from blinktrack_ros.synth.config import PRESETS

    return list(PRESETS)


def _suite_names() -> list[str]:
    from blinktrack_ros.synth.config import SUITES

    return list(SUITES)


def sequence_seed(seed: int, index: int, preset_name: str) -> int:
    """The seed of sequence `index` of a preset: independent streams per preset and index."""
    import zlib

    import numpy as np

    key = zlib.crc32(preset_name.encode())
    return int(np.random.SeedSequence([seed, index, key]).generate_state(1)[0])


def _config(args: argparse.Namespace, name: str | None = None):
    from blinktrack_ros.cli import UsageError
    from blinktrack_ros.synth.config import preset

    w, h = args.size if args.size else (None, None)
    try:
        config = preset(name or args.preset, w, h, args.duration)
        config.validate()
    except (KeyError, ValueError) as exc:
        raise UsageError(str(exc).strip("'\"")) from None
    return config


def _synth(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from blinktrack_ros.cli import UsageError
    from blinktrack_ros.synth.bagout import write_sequence_bag
    from blinktrack_ros.synth.config import SUITES
    from blinktrack_ros.synth.sequence import generate_sequence
    from blinktrack_ros.synth.textures import load_textures, sample_textures

    if args.from_video is not None:
        return _from_video(args)
    n = args.sequences if args.sequences is not None else (3 if args.suite else 1)
    seed = args.seed if args.seed is not None else (SUITE_SEED if args.suite else 0)
    if n < 1 or seed < 0:
        raise UsageError("--sequences must be >= 1 and --seed >= 0")
    presets = list(SUITES[args.suite]) if args.suite else [args.preset]
    configs = {name: _config(args, name) for name in presets}
    try:
        folder = load_textures(args.textures) if args.textures else None
    except (FileNotFoundError, ValueError) as exc:
        raise UsageError(f"--textures: {exc}") from None
    split = args.split or "test"
    args.out.mkdir(parents=True, exist_ok=True)
    if args.suite and folder is None:
        import json

        from blinktrack_ros.synth.textures import system_texture_paths, textured_photo_names

        photos = list(textured_photo_names(split))
        if not system_texture_paths():
            print("note: the Debian wallpaper packages are not installed (bash tools/setup.sh "
                  "--textures): this suite uses scikit-image's and procedural textures only, "
                  "so it differs from one made with them")
        (args.out / f"{args.suite}_suite.json").write_text(json.dumps(
            {"suite": args.suite, "presets": presets, "seed": seed, "sequences": n,
             "texture_split": split, "photographs": photos}, indent=1))
    jobs = [(name, f"{name}_s{seed}_{i:04d}", sequence_seed(seed, i, name))
            for name in presets for i in range(n)]
    taken = [j[1] for j in jobs if (args.out / j[1]).exists()]
    if taken:
        raise UsageError(f"{args.out / taken[0]} exists: choose another --out or --seed")
    for name, seq_name, s in tqdm(jobs, desc="sequences", unit="seq"):
        config = configs[name]
        textures = folder
        if textures is None and config.sensor is not None:
            textures = sample_textures(s, split)
        seq = generate_sequence(config, s, textures, progress=True)
        counts = write_sequence_bag(seq, args.out / seq_name, args.event_msg, progress=True)
        tqdm.write(f"{seq_name}: {len(seq.events)} events, {len(seq.frames)} frames, "
                   f"{seq.gt.ids.size} GT tracks, {sum(counts.values())} messages")
    return 0


def _from_video(args: argparse.Namespace) -> int:
    import json

    from blinktrack_ros.cli import UsageError
    from blinktrack_ros.synth.bagout import write_sequence_bag
    from blinktrack_ros.synth.video import VideoOptions, video_sequence

    if args.frame_hz <= 0 or args.exposure_ms <= 0 or args.upsample < 1:
        raise UsageError("--frame-hz and --exposure-ms must be positive, --upsample >= 1")
    options = VideoOptions(frame_hz=args.frame_hz, exposure_s=args.exposure_ms * 1e-3,
                           upsample=args.upsample)
    seed = args.seed or 0
    name = f"{args.from_video.resolve().name}_s{seed}"
    if (args.out / name).exists():
        raise UsageError(f"{args.out / name} exists: choose another --out or --seed")
    try:
        seq, stats = video_sequence(args.from_video, seed, options, progress=True)
    except (FileNotFoundError, ValueError) as exc:
        raise UsageError(f"--from-video: {exc}") from None
    args.out.mkdir(parents=True, exist_ok=True)
    counts = write_sequence_bag(seq, args.out / name, args.event_msg, progress=True)
    (args.out / f"{name}.reference.json").write_text(json.dumps(stats, indent=1))
    print(f"{name}: {stats['events']} events, {stats['aps_frames']} frames at "
          f"{stats['aps_hz']:g} Hz ({stats['exposure_s'] * 1e3:g} ms exposure), "
          f"{stats['tracks']} reference tracks ({stats['tracks_full_length']} full length); "
          f"reference error (forward-backward, one way) median "
          f"{stats['reference_fb_error_px_median']:.3f} px, p90 "
          f"{stats['reference_fb_error_px_p90']:.3f} px; {sum(counts.values())} messages")
    return 0
