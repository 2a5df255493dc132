"""The event network step under ONNX Runtime (optional: `pip install onnxruntime`).

`event_source.runtime: onnxruntime` runs each event window's network step in an ONNX Runtime
session instead of the frozen TorchScript trace. On one CPU thread (the live node's low-latency
setting, `node.torch_threads: 1`, and the offline frame worker) ONNX Runtime runs the shipped
lite step faster than PyTorch (README timing table); with `event_source.onnx_model` it runs a
graph quantised to int8 (`quantize_step`, `tools/quantize_event_net.py`), faster again, with
outputs that differ from the float network (validated on the full tracker before shipping: see
weights/README.md).

The graph is the step of `EventNet.forward` on flat tensors (`_FlatStep`: the six state tensors
and the SBT patches in, displacement, visibility logits and the new h, c, mem out), BatchNorm
folded, with the track count N free. An exported or quantised graph records the digest of the
weights it came from (`weights_digest`); loading it beside other weights is a clear error, never
a silent mismatch.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import fields
import hashlib
import io
from pathlib import Path
import tempfile
import warnings

import numpy as np
import torch

from blinktrack_ros.models.event_net import (
    CompiledStep,
    EventNet,
    EventNetState,
    _example_inputs,
    _FlatStep,
    prepare_for_inference,
)

INPUTS = tuple(f.name for f in fields(EventNetState)) + ("sbt",)
OUTPUTS = ("disp", "logits", "h_out", "c_out", "mem_out")
DIGEST_KEY = "blinktrack_weights_sha256"
PIP_HINT = "pip install onnx onnxruntime (or: pip install -e '.[onnx]')"


def weights_digest(model: EventNet) -> str:
    """sha256 over the names, dtypes, shapes and values of the model's state_dict (the weights
    as loaded, before BatchNorm folding)."""
    h = hashlib.sha256()
    for name, t in model.state_dict().items():
        t = t.detach().cpu().contiguous()
        h.update(f"{name}|{t.dtype}|{tuple(t.shape)}|".encode())
        h.update(t.numpy().tobytes())
    return h.hexdigest()


def export_step(model: EventNet) -> bytes:
    """ONNX bytes (opset 17, N dynamic) of the BatchNorm-folded step of `model`, with its
    weights' digest in the metadata."""
    import onnx

    plain = prepare_for_inference(model, channels_last=False).cpu()
    with torch.no_grad():
        state, sbt = _example_inputs(plain, 3, 0)
    args = tuple(getattr(state, k) for k in INPUTS[:-1]) + (sbt,)
    buf = io.BytesIO()
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")  # the legacy exporter's deprecation and tracer notes
        torch.onnx.export(_FlatStep(plain).eval(), args, buf, input_names=list(INPUTS),
                          output_names=list(OUTPUTS),
                          dynamic_axes={k: {0: "n"} for k in INPUTS + OUTPUTS},
                          opset_version=17, dynamo=False)
    graph = onnx.load_from_string(buf.getvalue())
    _set_digest(graph, weights_digest(model))
    return graph.SerializeToString()


def _set_digest(graph, digest: str) -> None:
    for prop in list(graph.metadata_props):
        if prop.key == DIGEST_KEY:
            graph.metadata_props.remove(prop)
    entry = graph.metadata_props.add()
    entry.key, entry.value = DIGEST_KEY, digest


def graph_digest(onnx_bytes: bytes | object) -> str | None:
    """The weights digest recorded in an exported graph, as bytes or a loaded ModelProto (None
    when it has none)."""
    import onnx

    graph = onnx.load_from_string(onnx_bytes) if isinstance(onnx_bytes, bytes) else onnx_bytes
    return next((p.value for p in graph.metadata_props if p.key == DIGEST_KEY), None)


def state_feed(state: EventNetState, sbt: torch.Tensor,
               names: tuple[str, ...] = INPUTS) -> dict[str, np.ndarray]:
    """The graph's inputs `names` for a state and SBT batch (float32, C order: channels-last
    tensors are copied to NCHW)."""
    return {k: np.ascontiguousarray((sbt if k == "sbt" else getattr(state, k))
                                    .detach().cpu().float().numpy()) for k in names}


def quantize_step(onnx_fp32: bytes, feeds: Iterable[dict[str, np.ndarray]],
                  op_types: tuple[str, ...] | None = ("Conv",)) -> bytes:
    """int8 graph (static quantisation, QDQ, weights per channel, activations uint8) of an
    exported step, calibrated on `feeds` (inputs as `state_feed` gives them, recorded from the
    tracker on training data); keeps the weights digest. op_types: the operators quantised
    (default the convolutions, nearly all of the arithmetic; the small fully connected layers
    that produce the sub-pixel outputs stay float); None = every operator ORT can."""
    import onnx
    from onnxruntime.quantization import (
        CalibrationDataReader,
        QuantFormat,
        QuantType,
        quantize_static,
    )
    from onnxruntime.quantization.shape_inference import quant_pre_process

    digest = graph_digest(onnx_fp32)
    used = {i.name for i in onnx.load_from_string(onnx_fp32).graph.input}

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self.it = iter(feeds)

        def get_next(self) -> dict[str, np.ndarray] | None:
            feed = next(self.it, None)
            return None if feed is None else {k: v for k, v in feed.items() if k in used}

    with tempfile.TemporaryDirectory() as tmp:
        src, pre, out = Path(tmp, "f.onnx"), Path(tmp, "p.onnx"), Path(tmp, "q.onnx")
        src.write_bytes(onnx_fp32)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            quant_pre_process(str(src), str(pre))
            quantize_static(str(pre), str(out), Reader(), quant_format=QuantFormat.QDQ,
                            per_channel=True, activation_type=QuantType.QUInt8,
                            weight_type=QuantType.QInt8,
                            op_types_to_quantize=list(op_types) if op_types else None)
        graph = onnx.load(str(out))
    if digest is not None:
        _set_digest(graph, digest)
    return graph.SerializeToString()


class OnnxEventNet(CompiledStep):
    """The event step in an ONNX Runtime session, called like the model (a `CompiledStep`:
    `(state, sbt) -> (disp, logits, new state)`); `init_state` stays PyTorch's.

    Args:
        model: the network as loaded (the digest is checked against it; `init_state` runs it).
        onnx_bytes: an exported or quantised step of these weights (None: export them now).
        threads: ONNX Runtime intra-op threads.
        check: compare with the model on example inputs (float graphs: within 1e-3 px / 1e-3;
            quantised graphs: finite outputs of the right shapes).

    Raises:
        ImportError: onnxruntime (or onnx) is not installed.
        ValueError: the graph was made from other weights, or computes something else.
    """

    def __init__(self, model: EventNet, onnx_bytes: bytes | None = None, threads: int = 1,
                 check: bool = True) -> None:
        try:
            import onnxruntime as ort
        except ImportError as exc:
            raise ImportError(f"event_source.runtime onnxruntime needs onnxruntime "
                              f"({PIP_HINT}): {exc}") from exc
        super().__init__(model.eval())
        exported = onnx_bytes is None
        if onnx_bytes is None:
            onnx_bytes = export_step(self.model)
        import onnx

        proto = onnx.load_from_string(onnx_bytes)
        recorded = graph_digest(proto)
        if recorded is None:
            raise ValueError("the ONNX event step records no weights digest: export it with "
                             "blinktrack_ros.models.event_onnx (export_step / quantize_step)")
        if recorded != weights_digest(self.model):
            raise ValueError("the ONNX event step was made from other weights than the loaded "
                             "event network (weights digest differs): export it again from "
                             "these weights")
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = max(1, int(threads))
        opts.inter_op_num_threads = 1
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        self.session = ort.InferenceSession(onnx_bytes, opts,
                                            providers=["CPUExecutionProvider"])
        # the exporter drops inputs the graph does not read (the compact net's ref_pool)
        self._used = tuple(i.name for i in self.session.get_inputs())
        self.quantized = any(n.op_type == "QuantizeLinear" for n in proto.graph.node)
        self.max_check_error: float | None = None
        if check:
            self._check(strict=exported or not self.quantized)

    def _run(self, state: EventNetState, sbt: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """The session's outputs as CPU float32 tensors."""
        return tuple(torch.from_numpy(a) for a in self.session.run(
            None, state_feed(state, sbt, self._used)))

    def _check(self, strict: bool) -> None:
        worst = 0.0
        with torch.no_grad():
            for i, n in enumerate((1, 5, 12)):
                state, sbt = _example_inputs(self.model, n, i + 1)
                want = self.model(state, sbt)
                got = self(state, sbt)
                pairs = [(got[0], want[0]), (got[1], want[1]), (got[2].h, want[2].h),
                         (got[2].c, want[2].c), (got[2].mem, want[2].mem)]
                for g, w in pairs:
                    if g.shape != w.shape or not bool(torch.isfinite(g).all()):
                        raise ValueError(f"the ONNX event step gives {tuple(g.shape)} (finite: "
                                         f"{bool(torch.isfinite(g).all())}) where the network "
                                         f"gives {tuple(w.shape)}")
                    worst = max(worst, float((g - w.float()).abs().max()))
        self.max_check_error = worst
        if strict and worst > 1e-3:
            raise ValueError(f"the ONNX event step differs from the network by {worst:.3g}")

