"""`blinktrack bench image-net`: time and FLOPs per frame of the image network (paper, lite)."""

from __future__ import annotations

import argparse
from typing import Any

SIZES = ((240, 180), (640, 480))  # width, height
# The authors' published image module, measured on this machine's 2 CPU cores (issue 5):
AUTHORS_MS = {(240, 180): 120.0, (640, 480): 275.0}
AUTHORS_GFLOP = {(240, 180): 17.0, (640, 480): 61.0}


def register_bench(bench_sub: argparse._SubParsersAction) -> None:
    """Add `blinktrack bench image-net`."""
    p = bench_sub.add_parser("image-net", help="image network: median ms and GFLOP per frame")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument("--tracks", type=int, default=64, help="tracks per frame (default 64)")
    p.add_argument("--repeats", type=int, default=10, help="timed frames per case (default 10)")
    p.add_argument("--configs", default="paper,lite,patch",
                   help="comma-separated: paper,lite,lite2,base,patch,patch3 (patch: the "
                        "default image network's design)")
    p.add_argument("--device", default="cpu",
                   help="cuda, cuda:1, ...: time on that device per --autocast dtype instead")
    p.add_argument("--autocast", default="fp32,bf16,fp16",
                   help="with --device: dtypes to time, and their max output diff vs fp32")
    p.add_argument("--threads", type=int, default=2, help="torch intra-op threads (default 2)")
    p.set_defaults(func=_bench)


def _bench(args: argparse.Namespace) -> int:
    from blinktrack_ros.bench.util import report
    from blinktrack_ros.cli import UsageError
    from blinktrack_ros.models.image_config import config_by_name

    if args.tracks < 0 or args.repeats < 1 or args.threads < 1:
        raise UsageError("--tracks must be >= 0, --repeats and --threads >= 1")
    try:
        configs = [(name, config_by_name(name)) for name in args.configs.split(",")]
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    import torch

    threads_before = torch.get_num_threads()
    torch.set_num_threads(args.threads)  # restored after the report (which records it)
    try:
        if args.device != "cpu":
            from blinktrack_ros.bench.device import image_figures, parse_modes

            try:
                modes = parse_modes(args.autocast)
            except ValueError as exc:
                raise UsageError(str(exc)) from None
            figures = {"device": args.device, "tracks": args.tracks}
            if torch.device(args.device).type == "cuda":
                figures["gpu"] = torch.cuda.get_device_name(torch.device(args.device))
            for name, _ in configs:
                figures.update(image_figures(name, args.device, args.tracks, modes,
                                             args.repeats))
            report("image-net", figures, args.json)
            return 0
        figures: dict[str, Any] = {"tracks": args.tracks, "repeats": args.repeats}
        for name, config in configs:
            figures.update(bench_config(name, config, args.tracks, args.repeats))
        figures["note"] = ("medians (and the frame minimum) over repeats on a shared 2-core "
                           "machine: timings are noisy; speedup = authors' ms / our median "
                           "(authors: 120 ms at 240x180, 275 ms at 640x480 for the paper size, "
                           "64 tracks)")
        report("image-net", figures, args.json)
    finally:
        torch.set_num_threads(threads_before)
    return 0


def bench_config(name: str, config: Any, tracks: int, repeats: int) -> dict[str, Any]:
    """Median encoder, tracking and total ms per frame, GFLOP per frame, ratios to the authors'."""
    import numpy as np
    import torch

    from blinktrack_ros.bench.util import time_calls
    from blinktrack_ros.models.image_net import ImageNet, count_parameters

    torch.manual_seed(0)
    net = ImageNet(config).eval()
    out: dict[str, Any] = {f"{name}_params_M": count_parameters(net) / 1e6}
    rng = np.random.default_rng(0)
    for width, height in SIZES:
        gray = torch.from_numpy(rng.random((height, width), dtype=np.float32))
        start = torch.from_numpy(rng.random((tracks, 2), dtype=np.float32)
                                 * np.float32([width - 1, height - 1]))
        with torch.inference_mode():
            ref_feats = net.sample_reference(net.encode_frame(gray), start)

            def encode(gray=gray):
                return net.encode_frame(gray)

            frame = encode()

            def track(frame=frame, ref_feats=ref_feats, start=start):
                return net.track(frame, ref_feats, start + 1.5, start)

            def total(ref_feats=ref_feats, start=start, gray=gray):
                return net.track(net.encode_frame(gray), ref_feats, start + 1.5, start)

            key = f"{name}_{width}x{height}"
            gflop = _gflop(total)  # eager (the counter does not see inside traces)
            if hasattr(net, "use_traced_steps"):  # what ImageSource runs: traced steps
                out[f"{key}_track_eager_ms"] = float(np.median(time_calls(track, repeats))) * 1e3
                net.use_traced_steps()
                track()  # trace (not timed)
            enc_ms = float(np.median(time_calls(encode, repeats))) * 1e3
            trk_ms = float(np.median(time_calls(track, repeats))) * 1e3
            tot_times_ms = time_calls(total, repeats) * 1e3
            tot_ms = float(np.median(tot_times_ms))
            if hasattr(net, "use_traced_steps"):
                net.use_traced_steps(False)
        out[f"{key}_encode_ms"] = enc_ms
        out[f"{key}_track_ms"] = trk_ms
        out[f"{key}_frame_ms"] = tot_ms
        out[f"{key}_frame_min_ms"] = float(tot_times_ms.min())
        out[f"{key}_frame_GFLOP"] = gflop
        out[f"{key}_speedup_vs_authors"] = AUTHORS_MS[(width, height)] / tot_ms
        out[f"{key}_flop_ratio_vs_authors"] = gflop / AUTHORS_GFLOP[(width, height)]
    return out


def _gflop(fn: Any) -> float:
    """FLOPs of one call counted by torch's FlopCounterMode (convolutions and matmuls)."""
    from torch.utils.flop_counter import FlopCounterMode

    counter = FlopCounterMode(display=False)
    with counter:
        fn()
    return counter.get_total_flops() / 1e9
