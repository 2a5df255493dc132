"""Step times of the event and image networks on an accelerator, per autocast dtype, with the
largest output difference (px) against float32 on the same inputs.

Used by `blinktrack bench event-net|image-net --device cuda --autocast fp32,bf16,fp16`.
Times are medians of synchronised calls (torch.cuda.synchronize after each) after warm-up.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np
import torch

DTYPES = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}
KEEP_PX = 1e-2  # an autocast dtype is kept only where its outputs stay this close to fp32


def parse_modes(text: str) -> list[str]:
    """'fp32,bf16' -> ['fp32', 'bf16'] (fp32 always first: it is the reference)."""
    modes = [m.strip() for m in text.split(",") if m.strip()]
    bad = [m for m in modes if m not in DTYPES]
    if bad:
        raise ValueError(f"unknown --autocast {bad}: choose from {sorted(DTYPES)}")
    return ["fp32"] + [m for m in modes if m != "fp32"]


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _timed(fn: Any, device: torch.device, repeats: int, warmup: int = 3) -> list[float]:
    for _ in range(warmup):
        fn()
    _sync(device)
    out = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        _sync(device)
        out.append(time.perf_counter() - t0)
    return out


def event_figures(name: str, device: str, sizes: list[int], modes: list[str], repeats: int
                  ) -> dict[str, Any]:
    """Median ms per event step at each N per dtype; max |disp - disp_fp32| px per dtype."""
    from blinktrack_ros.models.event_config import CONFIGS
    from blinktrack_ros.models.event_net import EventNet, prepare_for_inference

    dev = torch.device(device)
    torch.manual_seed(0)
    net = prepare_for_inference(EventNet(CONFIGS[name]()).eval()).to(dev)
    cfg, out = net.config, {}
    s, c, fmt = cfg.patch_size, cfg.in_channels, torch.channels_last
    for n in sizes:
        g = torch.Generator().manual_seed(n)
        ref = torch.rand((n, 1, s, s), generator=g).to(dev).contiguous(memory_format=fmt)
        sbt = torch.rand((n, c, s, s), generator=g)
        sbt = (sbt * (sbt > 0.8)).to(dev).contiguous(memory_format=fmt)

        def step(r=ref, x=sbt):
            state = net.init_state(r)
            for _ in range(2):  # a recurrent state as after a few steps
                _, _, state = net(state, x)
            return lambda st=state: net(st, x)

        _per_precision(out, lambda mode, n=n: f"{name}_{mode}_N{n}", modes, dev, repeats, step)
    return out


def image_figures(name: str, device: str, tracks: int, modes: list[str], repeats: int,
                  sizes: tuple[tuple[int, int], ...] = ((240, 180), (640, 480))
                  ) -> dict[str, Any]:
    """Median ms per frame (encode + track) per dtype; max position difference vs fp32 (px)."""
    from blinktrack_ros.models.image_config import config_by_name
    from blinktrack_ros.models.image_net import ImageNet

    dev = torch.device(device)
    torch.manual_seed(0)
    net = ImageNet(config_by_name(name)).eval().to(dev)
    rng = np.random.default_rng(0)
    out: dict[str, Any] = {}
    for width, height in sizes:
        gray = torch.from_numpy(rng.random((height, width), dtype=np.float32)).to(dev)
        start = torch.from_numpy(rng.random((tracks, 2), dtype=np.float32)
                                 * np.float32([width - 1, height - 1])).to(dev)

        def frame_fn(g=gray, st=start):
            ref_feats = net.sample_reference(net.encode_frame(g), st)
            return lambda: net.track(net.encode_frame(g), ref_feats, st + 1.5, st)

        _per_precision(out, lambda mode, w=width, h=height: f"{name}_{mode}_{w}x{h}_N{tracks}",
                       modes, dev, repeats, frame_fn)
    return out


def _per_precision(out: dict[str, Any], key: Any, modes: list[str], dev: torch.device,
                   repeats: int, make: Any) -> None:
    """For each autocast mode (fp32 first): `make()` under that autocast returns the call to
    time, whose output [0] is compared with fp32's; writes KEY_median_ms, and for the other
    modes KEY_max_diff_px and KEY_kept (within KEEP_PX)."""
    reference = None
    for mode in modes:
        dtype = DTYPES[mode]
        with torch.inference_mode(), torch.autocast(dev.type, dtype=dtype or torch.float32,
                                                    enabled=dtype is not None):
            fn = make()
            result = fn()[0].float()
            times = _timed(fn, dev, repeats)
        out[f"{key(mode)}_median_ms"] = float(np.median(times)) * 1e3
        if reference is None:
            reference = result
        else:
            diff = float((result - reference).abs().max())
            out[f"{key(mode)}_max_diff_px"] = diff
            out[f"{key(mode)}_kept"] = diff <= KEEP_PX
