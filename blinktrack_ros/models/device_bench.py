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
        ref_disp = None
        for mode in modes:
            dtype = DTYPES[mode]
            with torch.inference_mode(), torch.autocast(dev.type, dtype=dtype or torch.float32,
                                                        enabled=dtype is not None):
                state = net.init_state(ref)
                for _ in range(2):  # a recurrent state as after a few steps
                    _, _, state = net(state, sbt)
                disp = net(state, sbt)[0].float()
                times = _timed(lambda st=state, x=sbt: net(st, x), dev, repeats)
            out[f"{name}_{mode}_N{n}_median_ms"] = float(np.median(times)) * 1e3
            if ref_disp is None:
                ref_disp = disp
            else:
                diff = float((disp - ref_disp).abs().max())
                out[f"{name}_{mode}_N{n}_max_diff_px"] = diff
                out[f"{name}_{mode}_N{n}_kept"] = diff <= KEEP_PX
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
        ref_pos = None
        for mode in modes:
            dtype = DTYPES[mode]
            with torch.inference_mode(), torch.autocast(dev.type, dtype=dtype or torch.float32,
                                                        enabled=dtype is not None):
                ref_feats = net.sample_reference(net.encode_frame(gray), start)

                def frame(rf=ref_feats, st=start, g=gray):
                    return net.track(net.encode_frame(g), rf, st + 1.5, st)

                pos = frame()[0].float()
                times = _timed(frame, dev, repeats)
            key = f"{name}_{mode}_{width}x{height}_N{tracks}"
            out[f"{key}_median_ms"] = float(np.median(times)) * 1e3
            if ref_pos is None:
                ref_pos = pos
            else:
                diff = float((pos - ref_pos).abs().max())
                out[f"{key}_max_diff_px"] = diff
                out[f"{key}_kept"] = diff <= KEEP_PX
    return out
