"""`blinktrack bench event-net`: time per event step for N tracks, FLOPs per track and step."""

from __future__ import annotations

import argparse
from typing import Any

# the authors' published code (paper-size network), measured on these 2 cores (issue 4): ms
# per step
REFERENCE_MS = {1: 150.0, 16: 3900.0}


def register_bench(bench_sub: argparse._SubParsersAction) -> None:
    """Add `blinktrack bench event-net`."""
    p = bench_sub.add_parser("event-net", help="event network: ms per step, FLOPs per track")
    p.add_argument("--config", default="both",
                   help="paper, lite, lite2, base, both (= lite,paper) or a comma list")
    p.add_argument("--device", default="cpu",
                   help="cuda, cuda:1, ...: time on that device per --autocast dtype instead")
    p.add_argument("--autocast", default="fp32,bf16,fp16",
                   help="with --device: dtypes to time, and their max output diff vs fp32")
    p.add_argument("--sizes", default="1,16,64,256", help="comma-separated track counts N")
    p.add_argument("--repeats", type=int, default=30, help="timed steps per N (lite)")
    p.add_argument("--paper-repeats", type=int, default=3, help="timed steps per N (paper)")
    p.add_argument("--budget-s", type=float, default=60.0,
                   help="skip an N whose estimated timing run exceeds this many seconds")
    p.add_argument("--threads", type=int, default=2, help="torch intra-op threads")
    p.add_argument("--event-rate", type=float, default=2.0,
                   help="Mev/s of the synthetic events for the EventSource.observe figure")
    p.add_argument("--compile", action="store_true",
                   help="also time torch.compile(dynamic=True) of the lite model (~30 s)")
    p.add_argument("--cost-model", action="store_true",
                   help="only the cost model: aten calls, MFLOP per track and median ms per "
                        "step of each --config at each N, timed interleaved (side by side)")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=_bench)


def _parse_sizes(text: str) -> list[int]:
    from blinktrack_ros.cli import UsageError

    try:
        sizes = sorted({int(s) for s in text.split(",") if s.strip()})
    except ValueError as exc:
        raise UsageError(f"--sizes must be comma-separated integers, got {text!r}") from exc
    if not sizes or sizes[0] < 1:
        raise UsageError("--sizes needs positive track counts, e.g. 16,64,256")
    return sizes


def flops_per_track(model: Any) -> tuple[float, float]:
    """(step FLOPs, birth FLOPs) for one track, counted with FlopCounterMode."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    s, c = model.config.patch_size, model.config.in_channels
    with torch.inference_mode():
        birth = FlopCounterMode(display=False)
        with birth:
            state = model.init_state(torch.rand(1, 1, s, s))
        step = FlopCounterMode(display=False)
        with step:
            model(state, torch.rand(1, c, s, s))
    return float(step.get_total_flops()), float(birth.get_total_flops())


def time_steps(model: Any, n: int, repeats: int, warmup: int = 1, bf16: bool = False) -> Any:
    """Wall times (s) of `repeats` forward steps of n tracks (inference mode)."""
    import torch

    from blinktrack_ros.bench.util import time_calls
    from blinktrack_ros.models.event_net import forward_chunked

    s, c = model.config.patch_size, model.config.in_channels
    fmt = torch.channels_last
    with torch.inference_mode(), torch.autocast("cpu", torch.bfloat16, enabled=bf16):
        state = model.init_state(torch.rand(n, 1, s, s).contiguous(memory_format=fmt))
        sbt = torch.rand(n, c, s, s).contiguous(memory_format=fmt)
        return time_calls(lambda: forward_chunked(model, state, sbt), repeats, warmup)


def bench_config(name: str, sizes: list[int], repeats: int, budget_s: float) -> dict[str, Any]:
    """Figures of one config; N whose estimated run exceeds budget_s are skipped and listed."""
    import numpy as np
    import torch

    from blinktrack_ros.models.event_config import CONFIGS
    from blinktrack_ros.models.event_net import (
        EventNet,
        prepare_for_inference,
        trace_for_inference,
    )

    torch.manual_seed(0)
    model = EventNet(CONFIGS[name]()).eval()
    step_flops, birth_flops = flops_per_track(model)
    fast = prepare_for_inference(model)
    traced = trace_for_inference(fast)  # what EventSource runs (fast_inference, no bf16)
    out: dict[str, Any] = {
        f"{name}_params_M": sum(p.numel() for p in model.parameters()) / 1e6,
        f"{name}_patch_px": model.config.patch_size,
        f"{name}_GFLOP_per_track_step": step_flops / 1e9,
        f"{name}_GFLOP_per_track_birth": birth_flops / 1e9,
    }
    variants = [(name, fast, False), (f"{name}_bf16", fast, True)]
    if traced is not None:
        variants.insert(1, (f"{name}_traced", traced, False))
    for tag, net, bf16 in variants:
        per_track_s, skipped = None, []
        for n in sizes:
            if per_track_s is not None and per_track_s * n * (repeats + 1) > budget_s:
                skipped.append(n)
                continue
            times = time_steps(net, n, repeats, warmup=2, bf16=bf16)
            med = float(np.median(times))
            per_track_s = med / n
            out[f"{tag}_N{n}_median_ms"] = med * 1e3
            out[f"{tag}_N{n}_p99_ms"] = float(np.percentile(times, 99)) * 1e3
            if n in REFERENCE_MS and name == "paper":  # same network as the authors' code
                out[f"{tag}_N{n}_speedup_vs_authors_code"] = REFERENCE_MS[n] / (med * 1e3)
        if skipped:
            out[f"{tag}_skipped_N"] = (",".join(map(str, skipped))
                                       + f" (over --budget-s {budget_s})")
    return out


def eager_baseline(name: str, n: int, repeats: int) -> dict[str, Any]:
    """The same step without BatchNorm folding and channels-last (what the fast path buys)."""
    import numpy as np
    import torch

    from blinktrack_ros.bench.util import time_calls
    from blinktrack_ros.models.event_config import CONFIGS
    from blinktrack_ros.models.event_net import EventNet

    torch.manual_seed(0)
    model = EventNet(CONFIGS[name]()).eval()
    s, c = model.config.patch_size, model.config.in_channels
    with torch.inference_mode():
        state = model.init_state(torch.rand(n, 1, s, s))
        sbt = torch.rand(n, c, s, s)
        times = time_calls(lambda: model(state, sbt), repeats, 1)
    return {f"{name}_N{n}_plain_eager_median_ms": float(np.median(times)) * 1e3}


def compiled_figures(name: str, sizes: list[int], repeats: int) -> dict[str, Any]:
    """Medians with torch.compile(dynamic=True) of the fast model, and the compile time."""
    import time

    import numpy as np
    import torch

    from blinktrack_ros.bench.util import time_calls
    from blinktrack_ros.models.event_config import CONFIGS
    from blinktrack_ros.models.event_net import EventNet, prepare_for_inference

    fast = prepare_for_inference(EventNet(CONFIGS[name]()).eval())
    compiled = torch.compile(fast, dynamic=True)
    s, c, fmt = fast.config.patch_size, fast.config.in_channels, torch.channels_last
    out: dict[str, Any] = {}
    with torch.inference_mode():
        for n in sizes:
            state = fast.init_state(torch.rand(n, 1, s, s).contiguous(memory_format=fmt))
            sbt = torch.rand(n, c, s, s).contiguous(memory_format=fmt)
            t0 = time.perf_counter()
            compiled(state, sbt)
            out[f"{name}_compiled_N{n}_first_call_s"] = time.perf_counter() - t0
            times = time_calls(lambda st=state, x=sbt: compiled(st, x), repeats, 2)
            out[f"{name}_compiled_N{n}_median_ms"] = float(np.median(times)) * 1e3
    return out


def source_figures(name: str, n: int, repeats: int, rate_mev_s: float) -> dict[str, Any]:
    """Whole EventSource.observe (SBT-Max patches + network + covariances), 5 ms windows.

    Uniform random events on a 640x480 sensor at rate_mev_s million events per second.
    """
    import numpy as np

    from blinktrack_ros.bench.util import time_calls
    from blinktrack_ros.events.batch import EventBatch
    from blinktrack_ros.models.event_config import CONFIGS
    from blinktrack_ros.models.event_net import EventNet
    from blinktrack_ros.tracking.event_source import EventSource

    rng = np.random.default_rng(0)
    window, w, h = 5_000_000, 640, 480
    m = int(rate_mev_s * 1e6 * window * 1e-9)
    events = EventBatch(rng.integers(0, w, m).astype(np.uint16),
                        rng.integers(0, h, m).astype(np.uint16),
                        np.sort(rng.integers(0, window, m)).astype(np.int64) + 1,
                        rng.integers(0, 2, m).astype(np.uint8), w, h)
    src = EventSource(EventNet(CONFIGS[name]()))
    ids = np.arange(n, dtype=np.uint32)
    pos = rng.uniform([20, 20], [w - 20, h - 20], (n, 2))
    src.add_tracks(ids, frame=rng.integers(0, 256, (h, w), dtype=np.uint8), positions_px=pos)
    times = time_calls(lambda: src.observe(events, window, window, ids, pos), repeats, 2)
    return {f"{name}_source_observe_N{n}_{rate_mev_s:g}Mev_s_median_ms":
            float(np.median(times)) * 1e3}


def _bench(args: argparse.Namespace) -> int:
    import torch

    from blinktrack_ros.bench.util import report
    from blinktrack_ros.cli import UsageError

    if args.repeats < 1 or args.paper_repeats < 1 or args.threads < 1:
        raise UsageError("--repeats, --paper-repeats and --threads must be >= 1")
    sizes = _parse_sizes(args.sizes)
    torch.set_num_threads(args.threads)
    from blinktrack_ros.models.event_config import CONFIGS

    names = ("lite", "paper") if args.config == "both" else tuple(args.config.split(","))
    unknown = [n for n in names if n not in CONFIGS]
    if unknown:
        raise UsageError(f"--config {unknown}: choose from {sorted(CONFIGS)} or both")
    if args.cost_model:
        from blinktrack_ros.bench.cost_model import cost_table

        table = cost_table(names, tuple(sizes), args.repeats, args.threads)
        report("event-net", {f"{name}_{k}": v for name, row in table.items()
                             for k, v in row.items()}, args.json)
        return 0
    if args.device != "cpu":
        from blinktrack_ros.bench.device import event_figures, parse_modes

        try:
            modes = parse_modes(args.autocast)
        except ValueError as exc:
            raise UsageError(str(exc)) from None
        figures = {"device": args.device, "kept": "inference_mode + BatchNorm folded + "
                   "channels-last; *_kept: max |disp - fp32 disp| <= 0.01 px"}
        if torch.device(args.device).type == "cuda":
            figures["gpu"] = torch.cuda.get_device_name(torch.device(args.device))
        for name in names:
            repeats = args.paper_repeats if name == "paper" else args.repeats
            figures.update(event_figures(name, args.device, sizes, modes, repeats))
        report("event-net", figures, args.json)
        return 0
    figures: dict[str, Any] = {
        "kept": "inference_mode + BatchNorm folded + channels-last + auto chunks of tracks "
                "(auto_chunk_rows); *_traced: + the frozen TorchScript trace EventSource runs "
                "by default; bf16 and torch.compile(dynamic=True) optional (EventSourceConfig)"}
    for name in names:
        repeats = args.paper_repeats if name == "paper" else args.repeats
        figures.update(bench_config(name, sizes, repeats, args.budget_s))
        if name in ("lite", "lite2") and 64 in sizes:
            figures.update(eager_baseline(name, 64, repeats))
            figures.update(source_figures(name, 64, repeats, args.event_rate))
        if name == "lite" and args.compile:
            figures.update(compiled_figures(name, sizes, repeats))
    figures["note"] = "shared machine: timings are noisy, medians reported"
    report("event-net", figures, args.json)
    return 0
