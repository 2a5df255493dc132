"""CPU cost model of the event network step: time against operator calls and FLOPs.

`blinktrack bench event-net --cost-model` (and docs/networks_cost.md) use it. Operator calls
are counted with a TorchDispatchMode (every aten call of one eager step, views included), FLOPs
with FlopCounterMode; times are medians of the inference path EventSource runs (BatchNorm
folded, channels-last, frozen TorchScript trace where it is exact), interleaved over the
configs so that load on a shared machine hits them alike.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch.utils._python_dispatch import TorchDispatchMode


class _CountOps(TorchDispatchMode):
    def __init__(self) -> None:
        super().__init__()
        self.calls = 0
        self.compute = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):  # noqa: ANN001
        self.calls += 1
        name = str(func)
        if not any(v in name for v in ("view", "slice", "select", "split", "chunk",
                                       "detach", "alias", "unsqueeze", "expand", "t.default",
                                       "permute", "reshape", "_unsafe_view", "transpose")):
            self.compute += 1
        return func(*args, **(kwargs or {}))


def count_ops(model: Any, n: int = 4) -> tuple[int, int]:
    """(aten calls, compute calls without views) of one step of the eval-mode model."""
    from blinktrack_ros.models.event_net import _example_inputs

    with torch.inference_mode():
        state, sbt = _example_inputs(model, n, 0)
        counter = _CountOps()
        with counter:
            model(state, sbt)
    return counter.calls, counter.compute


def cost_table(names: tuple[str, ...], sizes: tuple[int, ...], repeats: int, threads: int = 2
               ) -> dict[str, Any]:
    """Per config: parameters, ops, MFLOP per track, median ms per step at each N."""
    from blinktrack_ros.bench.event_net import flops_per_track
    from blinktrack_ros.bench.util import time_calls
    from blinktrack_ros.models.event_config import CONFIGS
    from blinktrack_ros.models.event_net import (
        EventNet,
        _example_inputs,
        prepare_for_inference,
        trace_for_inference,
    )

    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        nets, out = {}, {}
        for name in names:
            torch.manual_seed(0)
            model = EventNet(CONFIGS[name]()).eval()
            fast = prepare_for_inference(model)
            traced = trace_for_inference(fast)
            calls, compute = count_ops(fast)
            step, _ = flops_per_track(model)
            out[name] = {"params_M": sum(p.numel() for p in model.parameters()) / 1e6,
                         "aten_calls": calls, "compute_calls": compute,
                         "MFLOP_per_track": step / 1e6, "traced": traced is not None}
            nets[name] = traced or fast
        times: dict[tuple[str, int], list[float]] = {}
        with torch.inference_mode():
            for n in sizes:
                inputs = {name: _example_inputs(prepare_for_inference(
                    EventNet(CONFIGS[name]()).eval()), n, 1) for name in names}
                for _ in range(3):  # interleaved rounds
                    for name in names:
                        state, sbt = inputs[name]
                        t = time_calls(lambda net=nets[name], s=state, x=sbt: net(s, x),
                                       max(1, repeats // 3), warmup=2)
                        times.setdefault((name, n), []).extend(t.tolist())
        for (name, n), ts in times.items():
            med = float(np.median(ts))
            out[name][f"N{n}_ms"] = med * 1e3
            out[name][f"N{n}_GFLOP_s"] = out[name]["MFLOP_per_track"] * n / 1e3 / med
        return out
    finally:
        torch.set_num_threads(before)
