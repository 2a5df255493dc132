"""`blinktrack bench runtimes`: the shipped lite networks under PyTorch (what the pipeline runs),
ONNX Runtime and OpenVINO, side by side (issue 17: adopt another runtime only with a measured
win at the default track count).

Each network step is exported once to ONNX (TorchScript exporter, opset 17, the track count N a
dynamic axis) and run by each installed runtime on the same inputs:

- `event`: one event-network step (`EventNet.forward` on flat tensors), N tracks. PyTorch runs
  what `EventSource` runs: BatchNorm folded, channels-last, the frozen TorchScript trace.
- `image`: the patch image network's refinements of one frame (one step per entry of
  `patch_levels`, each at its pyramid level), N tracks on a 240x180 frame. PyTorch runs what
  `ImageSource` runs: the frozen per-level traces; the other runtimes run one session per level
  and add the displacements in numpy.

`onnxruntime-int8` runs the shipped int8 graph of the default event weights
(`event_source.onnx_model: event_lite3_int8.onnx`; event network only).

Each runtime runs in its own process; timing alternates them within each round, one block at a
time (median of `repeats` calls per runtime, thread count and N, each block after 0.1 s idle so
that the previous block's spinning threads do not take the cores), and reports the median over
rounds: on a shared machine, drift hits every runtime alike. Every runtime's outputs are
compared with the eager PyTorch model (max |difference|).
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
import io
from pathlib import Path
import tempfile
import time
from typing import Any
import warnings

import numpy as np

RUNTIMES = ("torch", "onnxruntime", "onnxruntime-int8", "openvino")
INT8_EVENT_GRAPH = "weights/event_lite3_int8.onnx"  # the default event weights in int8
PIP_HINT = "pip install onnx onnxruntime openvino (or: pip install -e '.[runtimes]')"
IMAGE_SIZE = (180, 240)  # H, W: the pipeline bench's default sensor


@dataclass
class Graph:
    """One ONNX graph and how to feed it."""

    onnx: bytes
    inputs: tuple[str, ...]  # names, in the order of the example arrays
    outputs: tuple[str, ...]


@dataclass
class Case:
    """One network at one track count: how each runtime computes its outputs."""

    torch_run: Callable[[], Any]  # what the pipeline runs (timed)
    reference: list[np.ndarray]  # eager PyTorch outputs
    graphs: list[Graph]  # one per runtime call (the image network: one per level)
    feeds: list[dict[str, np.ndarray]]  # the inputs of each graph (image: level 0 positions)
    combine: Callable[[Callable[[int, dict[str, np.ndarray]], list[np.ndarray]]],
                      list[np.ndarray]]  # chains the graphs' calls into the reference's outputs


def available_runtimes() -> tuple[str, ...]:
    """The runtimes that can run here (torch always; the others when installed)."""
    found = ["torch"]
    for name in ("onnxruntime", "openvino"):
        try:
            __import__(name)
            __import__("onnx")  # the exporter needs it
        except ImportError:
            continue
        found.append(name)
        if name == "onnxruntime":
            from blinktrack_ros.resources import find_share_file

            try:
                find_share_file(INT8_EVENT_GRAPH)
                found.append("onnxruntime-int8")
            except FileNotFoundError:
                pass
    return tuple(found)


def _runs(runtime: str, net_name: str) -> bool:
    """Whether a runtime runs a network (the int8 graph exists for the event network only)."""
    return runtime != "onnxruntime-int8" or net_name == "event"


def export_onnx(module: Any, args: tuple, inputs: tuple[str, ...], outputs: tuple[str, ...],
                dynamic: tuple[str, ...]) -> Graph:
    """ONNX bytes of `module(*args)` with axis 0 of the `dynamic` names free (N)."""
    import torch

    buf = io.BytesIO()
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")  # the legacy exporter's deprecation and tracer notes
        torch.onnx.export(module, args, buf, input_names=list(inputs),
                          output_names=list(outputs),
                          dynamic_axes={k: {0: "n"} for k in dynamic}, opset_version=17,
                          dynamo=False)
    return Graph(buf.getvalue(), inputs, outputs)


def event_case(n: int, weights: str | None = None, seed: int = 0) -> tuple[Case, Any]:
    """The event network step at n tracks; also returns the source (keeps the traces). The
    graph is the one `event_source.runtime: onnxruntime` runs (`models.event_onnx`)."""
    import torch

    from blinktrack_ros.models.event_net import _example_inputs, load_event_net
    from blinktrack_ros.models.event_onnx import INPUTS, OUTPUTS, export_step, state_feed
    from blinktrack_ros.tracking.build import (
        DEFAULT_EVENT_WEIGHTS,
        make_event_source,
        resolve_weights,
    )

    path = resolve_weights(weights, DEFAULT_EVENT_WEIGHTS)
    source = make_event_source(path)
    net, step = source.net, source._step_net  # folded + channels-last; the trace
    graph = Graph(export_step(load_event_net(path)), INPUTS, OUTPUTS)
    plain = net.to(memory_format=torch.contiguous_format)  # NCHW inputs for every runtime
    with torch.no_grad():
        state, sbt = _example_inputs(plain, n, seed)
        want = plain(state, sbt)
        reference = [t.numpy().copy() for t in (want[0], want[1], want[2].h, want[2].c,
                                                 want[2].mem)]
    net.to(memory_format=torch.channels_last)
    cl = torch.channels_last
    state_cl = type(state)(*(a.contiguous(memory_format=cl) if a.dim() == 4 else a
                             for a in (getattr(state, k) for k in INPUTS[:-1])))
    sbt_cl = sbt.contiguous(memory_format=cl)

    def torch_run():
        with torch.inference_mode():
            return step(state_cl, sbt_cl)

    feed = state_feed(state, sbt)
    return Case(torch_run, reference, [graph], [feed], lambda call: call(0, feed)), source


def image_case(n: int, weights: str | None = None, seed: int = 0) -> tuple[Case, Any]:
    """The image network's refinements of one frame at n tracks."""
    import torch

    from blinktrack_ros.models.image_patch import _StepAtLevel
    from blinktrack_ros.tracking.build import make_image_source

    source = make_image_source(weights)
    net = source.model
    if not hasattr(net, "use_traced_steps"):
        raise ValueError("the image bench needs the patch image network (image_patch.pt)")
    rng = np.random.default_rng(seed)
    h, w = IMAGE_SIZE
    with torch.no_grad():
        frame = net.encode_frame(torch.from_numpy(rng.random((h, w), dtype=np.float32)))
        ref_pos = torch.from_numpy(rng.random((n, 2), dtype=np.float32)
                                   * np.float32([w - 1, h - 1]))
        ref = net.sample_reference(frame, ref_pos)
        start = ref_pos + torch.from_numpy(rng.normal(0, 1.5, (n, 2)).astype(np.float32))
        net.use_traced_steps(False)
        want = net.track_iterations(frame, ref, start)
        reference = [want[-1][0].numpy().copy(), want[-1][1].numpy().copy()]
        levels = list(net.config.patch_levels)
        graphs = {lv: export_onnx(_StepAtLevel(net, lv).eval(), (frame.pyramid[lv], ref, start),
                                  ("image", "ref", "pos"), ("disp", "logits"),
                                  ("ref", "pos", "disp", "logits"))
                  for lv in dict.fromkeys(levels)}
    net.use_traced_steps()  # what ImageSource runs

    def torch_run():
        with torch.inference_mode():
            return net.track_iterations(frame, ref, start)

    order = list(graphs)
    feeds = [{"image": frame.pyramid[lv].numpy(), "ref": ref.numpy()} for lv in order]

    def combine(call):
        pos = start.numpy()
        logits = None
        for lv in levels:
            i = order.index(lv)
            disp, logits = call(i, dict(feeds[i], pos=pos))
            pos = pos + disp
        return [pos, logits]

    return Case(torch_run, reference, [graphs[lv] for lv in order], feeds, combine), source


class _OrtRunner:
    def __init__(self, graphs: list[Graph], threads: int) -> None:
        import onnxruntime as ort

        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        self.sessions = [ort.InferenceSession(g.onnx, opts, providers=["CPUExecutionProvider"])
                         for g in graphs]
        # the exporter drops inputs a graph does not read (e.g. an unused reference map)
        self.used = [{i.name for i in s.get_inputs()} for s in self.sessions]

    def __call__(self, i: int, feed: dict[str, np.ndarray]) -> list[np.ndarray]:
        return self.sessions[i].run(None, {k: v for k, v in feed.items() if k in self.used[i]})


class _OpenVinoRunner:
    def __init__(self, graphs: list[Graph], threads: int, tmp: Path) -> None:
        import openvino as ov

        core = ov.Core()
        tmp.mkdir(parents=True, exist_ok=True)
        self.requests, self.outputs, self.used = [], [], []
        for j, g in enumerate(graphs):
            path = tmp / f"graph{j}.onnx"
            path.write_bytes(g.onnx)
            compiled = core.compile_model(str(path), "CPU", {
                "INFERENCE_NUM_THREADS": threads, "PERFORMANCE_HINT": "LATENCY",
                "INFERENCE_PRECISION_HINT": "f32"})
            self.requests.append(compiled.create_infer_request())
            self.outputs.append(list(compiled.outputs))
            self.used.append({name for port in compiled.inputs for name in port.get_names()})

    def __call__(self, i: int, feed: dict[str, np.ndarray]) -> list[np.ndarray]:
        res = self.requests[i].infer({k: v for k, v in feed.items() if k in self.used[i]})
        return [res[o] for o in self.outputs[i]]


SETTLE_S = 0.1  # idle time before each timed block: the previous runtime's spinning worker
# threads (OpenMP, ONNX Runtime's pool) go to sleep instead of taking the other core


def _median_ms(fn: Callable[[], Any], repeats: int) -> float:
    time.sleep(SETTLE_S)
    fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return float(np.median(times)) * 1e3


def _outputs(case: Case, net_name: str, runtime: str, runner: Callable | None) -> list:
    """The outputs of one runtime, in the reference's order."""
    if runtime != "torch":
        return case.combine(runner)
    got = case.torch_run()
    got = [got[0], got[1], got[2].h, got[2].c, got[2].mem] if net_name == "event" \
        else list(got[-1])
    return [g.numpy() for g in got]


def _worker(runtime: str, nets: tuple[str, ...], sizes: tuple[int, ...],
            threads: tuple[int, ...], conn: Any) -> None:
    """One runtime in its own process: builds every case, sends the max differences, then
    times the blocks the parent asks for ((net, n, threads, repeats) -> median ms; None ends).

    One process per runtime: in one process the runtimes' thread pools (OpenMP, ONNX Runtime's,
    OpenVINO's TBB) disturbed each other's timings by up to 1.6x even with idle gaps."""
    import torch

    makers = {"event": event_case, "image": image_case}
    try:
        with tempfile.TemporaryDirectory() as tmp:
            cases, runners, diffs = {}, {}, {}
            for net_name in nets:
                if not _runs(runtime, net_name):
                    continue
                for n in sizes:
                    case, keep = makers[net_name](n)
                    cases[net_name, n] = (case, keep)
                    for th in threads:
                        if runtime == "onnxruntime":
                            runners[net_name, n, th] = _OrtRunner(case.graphs, th)
                        elif runtime == "onnxruntime-int8":
                            from blinktrack_ros.resources import find_share_file

                            g = case.graphs[0]
                            runners[net_name, n, th] = _OrtRunner([Graph(
                                find_share_file(INT8_EVENT_GRAPH).read_bytes(), g.inputs,
                                g.outputs)], th)
                        elif runtime == "openvino":
                            runners[net_name, n, th] = _OpenVinoRunner(
                                case.graphs, th, Path(tmp) / f"{net_name}{n}_{th}")
                    got = _outputs(case, net_name, runtime, runners.get((net_name, n, threads[0])))
                    diffs[f"{net_name}_N{n}_{runtime}_max_abs_diff"] = max(
                        float(np.abs(np.asarray(a, np.float64) - b).max())
                        for a, b in zip(got, case.reference))
            if runtime != "torch":
                torch.set_num_threads(1)  # torch only built the inputs here
            conn.send(diffs)
            while (msg := conn.recv()) is not None:
                net_name, n, th, repeats = msg
                case = cases[net_name, n][0]
                if runtime == "torch":
                    torch.set_num_threads(th)
                    fn = case.torch_run
                else:
                    fn = partial(case.combine, runners[net_name, n, th])
                conn.send(_median_ms(fn, repeats))
    except Exception as exc:  # noqa: BLE001 - reported by the parent
        conn.send(exc)


def bench_runtimes(sizes: tuple[int, ...] = (16, 64, 256), threads: tuple[int, ...] = (1, 2),
                   rounds: int = 5, repeats: int = 20, nets: tuple[str, ...] = ("event", "image"),
                   runtimes: tuple[str, ...] | None = None, default_n: int = 64,
                   progress: bool = True) -> dict[str, Any]:
    """All figures: `{net}_N{n}_t{threads}_{runtime}_ms` (median over rounds of per-round
    medians), `{net}_N{n}_{runtime}_max_abs_diff` against eager PyTorch, and
    `{net}_N{default_n}_t{threads}_{runtime}_speedup` (PyTorch ms / runtime ms).

    Each runtime runs in its own process (see `_worker`); the parent alternates them, one
    block at a time, so only one computes while the others wait on a pipe."""
    import multiprocessing

    have = available_runtimes()
    runtimes = have if runtimes is None else runtimes
    missing = [r for r in runtimes if r not in have]
    if missing:
        raise ImportError(f"runtime(s) not installed: {', '.join(missing)} ({PIP_HINT})")
    import torch

    figures: dict[str, Any] = {"runtimes": ",".join(runtimes),
                               "default_threads": torch.get_num_threads(),
                               "rounds": rounds, "repeats": repeats}
    ctx = multiprocessing.get_context("spawn")
    workers = {}
    bar = None
    try:
        for name in runtimes:
            parent, child = ctx.Pipe()
            proc = ctx.Process(target=_worker, args=(name, nets, sizes, threads, child),
                               daemon=True)
            proc.start()
            workers[name] = (proc, parent)
        for name, (_, conn) in workers.items():
            figures.update(_receive(conn, name))
        if progress:
            from tqdm import tqdm

            bar = tqdm(total=rounds * len(nets) * len(sizes), desc="bench runtimes",
                       leave=False)
        times: dict[tuple, list[float]] = {}
        for _ in range(rounds):
            for net_name in nets:
                for n in sizes:
                    for th in threads:
                        for name, (_, conn) in workers.items():
                            if not _runs(name, net_name):
                                continue
                            conn.send((net_name, n, th, repeats))
                            times.setdefault((net_name, n, th, name), []).append(
                                _receive(conn, name))
                    if bar is not None:
                        bar.update(1)
    finally:
        if bar is not None:
            bar.close()
        for proc, conn in workers.values():
            try:
                conn.send(None)
            except (BrokenPipeError, OSError):
                pass
            proc.join(30)
            if proc.is_alive():
                proc.kill()
    for (net_name, n, th, name), values in times.items():
        figures[f"{net_name}_N{n}_t{th}_{name}_ms"] = float(np.median(values))
    for net_name in nets:
        for th in threads:
            base = figures.get(f"{net_name}_N{default_n}_t{th}_torch_ms")
            for name in runtimes:
                other = figures.get(f"{net_name}_N{default_n}_t{th}_{name}_ms")
                if name != "torch" and base and other:
                    figures[f"{net_name}_N{default_n}_t{th}_{name}_speedup"] = base / other
    return figures


def _receive(conn: Any, runtime: str) -> Any:
    if not conn.poll(600):
        raise RuntimeError(f"bench runtimes: the {runtime} worker did not answer in 600 s")
    msg = conn.recv()
    if isinstance(msg, Exception):
        raise RuntimeError(f"bench runtimes: the {runtime} worker failed: {msg}") from msg
    return msg


def register_bench(bench_sub: argparse._SubParsersAction) -> None:
    """Add `blinktrack bench runtimes`."""
    p = bench_sub.add_parser(
        "runtimes", help="lite event and image networks: PyTorch (as the pipeline runs them) "
                         "vs ONNX Runtime vs OpenVINO, side by side (needs onnx, onnxruntime, "
                         "openvino)")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument("--sizes", default="16,64,256", help="comma-separated track counts N")
    p.add_argument("--threads", default="1,2", help="comma-separated intra-op thread counts")
    p.add_argument("--rounds", type=int, default=5, help="alternating rounds (median over them)")
    p.add_argument("--repeats", type=int, default=20, help="timed calls per runtime and round")
    p.add_argument("--nets", default="event,image", help="event, image or both")
    p.add_argument("--runtimes", default=None,
                   help="comma list of torch, onnxruntime, onnxruntime-int8 (the shipped int8 "
                        "event graph), openvino (default: those installed)")
    p.set_defaults(func=_bench)


def _ints(text: str, what: str) -> tuple[int, ...]:
    from blinktrack_ros.cli import UsageError

    try:
        values = tuple(int(v) for v in text.split(",") if v.strip())
    except ValueError:
        raise UsageError(f"--{what} takes comma-separated integers, got {text!r}") from None
    if not values or min(values) < 1:
        raise UsageError(f"--{what} needs positive integers, got {text!r}")
    return values


def _bench(args: argparse.Namespace) -> int:
    from blinktrack_ros.bench.util import report
    from blinktrack_ros.cli import UsageError

    nets = tuple(v for v in args.nets.split(",") if v)
    if not nets or set(nets) - {"event", "image"}:
        raise UsageError(f"--nets takes event and/or image, got {args.nets!r}")
    runtimes = None
    if args.runtimes:
        runtimes = tuple(v for v in args.runtimes.split(",") if v)
        if set(runtimes) - set(RUNTIMES):
            raise UsageError(f"--runtimes takes {', '.join(RUNTIMES)}, got {args.runtimes!r}")
    if args.rounds < 1 or args.repeats < 1:
        raise UsageError("--rounds and --repeats must be at least 1")
    sizes, threads = _ints(args.sizes, "sizes"), _ints(args.threads, "threads")
    try:
        figures = bench_runtimes(sizes, threads, args.rounds, args.repeats, nets, runtimes,
                                 default_n=64 if 64 in sizes else sizes[0])
    except ImportError as exc:
        raise UsageError(str(exc)) from None
    report("runtimes", figures, args.json)
    return 0
