"""The event module: per-track displacement and visibility from SBT-Max patches.

Patch convention: an input patch of side S covers S x S sensor pixels; the feature sits at the
patch's geometric centre ((S - 1) / 2, (S - 1) / 2 in patch indices). The predicted
displacement (N, 2) pixel xy is the feature's offset from the target patch's geometric centre.

Recurrent state is explicit (`EventNetState`, one row per track): rows are created at track
birth by `EventNet.init_state` (reference features computed once from the grayscale reference
patch), selected/concatenated with `select_rows` / `cat_states`, and passed through `forward`.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from pathlib import Path

import torch
from torch import nn
import torch.nn.functional as F

from blinktrack_ros.models.checkpoint import (
    CheckpointError,
    fusion_noise_of,
    load_checkpoint,
    save_checkpoint,
)
from blinktrack_ros.models.event_config import EventNetConfig
from blinktrack_ros.models.event_layers import (
    FPNEncoder,
    MotionHead,
    VisibilityHead,
    centre_crop,
    centre_vector,
)

KIND = "event_net"


@dataclass(frozen=True)
class EventNetState:
    """Recurrent state of N tracks (row i belongs to the same track in every tensor).

    Attributes:
        ref_vec: (N, F) reference feature at the reference patch centre (correlation kernel).
        ref_mid: (N, R, C, C) redirected reference features, centre crop.
        ref_pool: (N, R, C, C) redirected reference features, 2x-pooled full view.
        h, c: (N, L, s, s) ConvLSTM hidden and cell state.
        mem: (N, E) gated displacement state.
    """

    ref_vec: torch.Tensor
    ref_mid: torch.Tensor
    ref_pool: torch.Tensor
    h: torch.Tensor
    c: torch.Tensor
    mem: torch.Tensor

    def __len__(self) -> int:
        return int(self.ref_vec.shape[0])


def select_rows(state: EventNetState, rows: torch.Tensor | list[int]) -> EventNetState:
    """The state of the given rows, in the given order (e.g. to drop dead tracks)."""
    idx = torch.as_tensor(rows, dtype=torch.long, device=state.ref_vec.device)
    return EventNetState(*(getattr(state, f.name).index_select(0, idx) for f in fields(state)))


def cat_states(states: list[EventNetState]) -> EventNetState:
    """Concatenate states row-wise (e.g. existing tracks followed by newborn ones)."""
    if not states:
        raise ValueError("cat_states needs at least one state")
    return EventNetState(*(torch.cat([getattr(s, f.name) for s in states], 0)
                           for f in fields(EventNetState)))


def put_rows(state: EventNetState, rows: torch.Tensor, part: EventNetState) -> EventNetState:
    """`state` with the recurrent tensors (h, c, mem) of `rows` replaced by those of `part`.

    The reference tensors never change after birth, so they are shared, not copied.
    """
    idx = torch.as_tensor(rows, dtype=torch.long, device=state.ref_vec.device)
    h, c, mem = (getattr(state, k).index_copy(0, idx, getattr(part, k).to(getattr(state, k)))
                 for k in ("h", "c", "mem"))  # .to: rows computed under autocast may be bf16
    return EventNetState(state.ref_vec, state.ref_mid, state.ref_pool, h, c, mem)


class EventNet(nn.Module):
    """Two FPN encoders, two-scale softmax correlation, ConvLSTM motion head, visibility head.

    `EventNet(config)` with config.arch == "compact" builds an `event_compact.CompactEventNet`
    (a subclass), so a checkpoint's config selects the architecture.
    """

    def __new__(cls, config: EventNetConfig | None = None):
        if cls is EventNet and config is not None and config.arch == "compact":
            from blinktrack_ros.models.event_compact import CompactEventNet

            return super().__new__(CompactEventNet)
        return super().__new__(cls)

    def __init__(self, config: EventNetConfig | None = None):
        super().__init__()
        self.config = cfg = config or EventNetConfig.paper()
        self.ref_encoder = FPNEncoder(1, cfg)
        self.tgt_encoder = FPNEncoder(cfg.in_channels, cfg)
        self.ref_redir = nn.Conv2d(cfg.feature_dim, cfg.redir_dim, 3, padding=1)
        self.tgt_redir = nn.Conv2d(cfg.feature_dim, cfg.redir_dim, 3, padding=1)
        self.motion = MotionHead(cfg)
        self.visibility = VisibilityHead(cfg)

    def init_state(self, ref_patches: torch.Tensor) -> EventNetState:
        """New state rows from (N, 1, S, S) grayscale reference patches in [0, 1]."""
        cfg = self.config
        self._check_input(ref_patches, 1)
        f = self.ref_encoder(ref_patches)  # N F S S
        ref_vec = centre_vector(f)  # N F
        g = self.ref_redir(f)  # N R S S
        n, size = ref_patches.shape[0], cfg.motion_sizes()[1]
        fmt = self._memory_format()
        zeros = ref_patches.new_zeros((n, cfg.motion_channels[1], size, size)).contiguous(
            memory_format=fmt)
        mid = centre_crop(g, cfg.corr_size).contiguous(memory_format=fmt)
        pool = F.avg_pool2d(g, 2).contiguous(memory_format=fmt)
        return EventNetState(ref_vec, mid, pool, zeros, zeros.clone(),
                             ref_patches.new_zeros((n, cfg.embed_dim)))

    def forward(self, state: EventNetState, sbt: torch.Tensor
                ) -> tuple[torch.Tensor, torch.Tensor, EventNetState]:
        """One event step for all N tracks.

        Args:
            state: recurrent state with N rows.
            sbt: (N, 2*bins, S, S) SBT-Max patches centred on the tracks' current positions.

        Returns:
            displacement (N, 2) pixel xy from the patch centre, logits (N, 2) [occluded,
            visible], and the new state.
        """
        cfg = self.config
        self._check_input(sbt, cfg.in_channels)
        if sbt.shape[0] != len(state):
            raise ValueError(f"{sbt.shape[0]} patches for a state of {len(state)} tracks")
        f = self.tgt_encoder(sbt)  # N F S S
        fmt = self._memory_format()
        corr_mid = self._correlate(centre_crop(f, cfg.corr_size), state.ref_vec)
        corr_pool = self._correlate(F.avg_pool2d(f, 2), state.ref_vec)
        corr_mid, corr_pool = (c.contiguous(memory_format=fmt) for c in (corr_mid, corr_pool))
        g = self.tgt_redir(f)  # N R S S
        parts = [corr_mid, centre_crop(g, cfg.corr_size), state.ref_mid,
                 corr_pool, F.avg_pool2d(g, 2), state.ref_pool]
        if fmt == torch.channels_last and not torch.is_grad_enabled():
            cs = cfg.corr_size  # write the joint input directly in the heads' memory format
            joint = torch.empty((sbt.shape[0], cfg.joint_channels, cs, cs), device=sbt.device,
                                dtype=corr_mid.dtype, memory_format=fmt)
            torch.cat(parts, 1, out=joint)  # N J C C
        else:
            joint = torch.cat(parts, 1)  # N J C C
        logits = self.visibility(joint)
        disp, h, c, mem = self.motion(joint, state.h, state.c, state.mem)
        new_state = EventNetState(state.ref_vec, state.ref_mid, state.ref_pool, h, c, mem)
        return disp, logits, new_state

    @staticmethod
    def _correlate(f: torch.Tensor, ref_vec: torch.Tensor) -> torch.Tensor:
        """Softmax over positions of <f, ref_vec>: (N, F, C, C), (N, F) -> (N, 1, C, C)."""
        n, _, hh, ww = f.shape
        corr = torch.einsum("nfhw,nf->nhw", f, ref_vec).reshape(n, hh * ww)
        return torch.softmax(corr, dim=1).reshape(n, 1, hh, ww)

    def _memory_format(self) -> torch.memory_format:
        """channels_last when the weights are (see prepare_for_inference), else contiguous."""
        w = self.tgt_redir.weight
        return torch.channels_last if not w.is_contiguous() else torch.contiguous_format

    def _check_input(self, x: torch.Tensor, channels: int) -> None:
        s = self.config.patch_size
        if x.dim() != 4 or tuple(x.shape[1:]) != (channels, s, s):
            raise ValueError(f"expected (N, {channels}, {s}, {s}) patches, got {tuple(x.shape)}")


def auto_chunk_rows(config: EventNetConfig) -> int:
    """Tracks per forward that keep a full-resolution feature map near 16 MB (cache friendly).

    Measured on 2 cores: the paper model runs 16 tracks 1.4x faster in chunks of 2 than in
    one batch; the lite model is never chunked in practice.
    """
    return max(1, int(4e6 // (config.feature_dim * config.patch_size ** 2)))


def forward_chunked(model: EventNet, state: EventNetState, sbt: torch.Tensor,
                    max_rows: int | None = None
                    ) -> tuple[torch.Tensor, torch.Tensor, EventNetState]:
    """`model(state, sbt)` computed in chunks of at most max_rows tracks (same result)."""
    n = len(state)
    k = max_rows or auto_chunk_rows(model.config)
    if n <= k:
        return model(state, sbt)
    outs = []
    for i in range(0, n, k):
        part = EventNetState(*(getattr(state, f.name)[i:i + k] for f in fields(state)))
        outs.append(model(part, sbt[i:i + k]))
    disp = torch.cat([o[0] for o in outs])
    logits = torch.cat([o[1] for o in outs])
    new = EventNetState(state.ref_vec, state.ref_mid, state.ref_pool,
                        *(torch.cat([getattr(o[2], name) for o in outs])
                          for name in ("h", "c", "mem")))
    return disp, logits, new


def save_event_net(path: str | Path, model: EventNet, extra: dict | None = None) -> None:
    """Write a checkpoint (kind "event_net") with the model's config and weights."""
    save_checkpoint(path, KIND, model.config, model.state_dict(), extra)


def load_event_net(path: str | Path, device: str | torch.device = "cpu",
                   expected_config: EventNetConfig | None = None) -> EventNet:
    """Load an event network in eval mode; CheckpointError on kind/config/weight mismatch."""
    config, state_dict, extra = load_checkpoint(path, KIND, EventNetConfig, expected_config)
    model = EventNet(config)
    try:
        model.load_state_dict(state_dict, strict=True)
    except RuntimeError as exc:
        raise CheckpointError(f"{path}: weights do not fit the stored config: {exc}") from exc
    # the measurement noise fitted for these weights, if any (FusionConfig.noise_from_weights)
    model.fusion_noise = fusion_noise_of(extra, path)
    return model.to(device).eval()


def prepare_for_inference(model: EventNet, channels_last: bool = True) -> EventNet:
    """A copy of `model` for fast inference: eval mode, BatchNorm folded, channels-last.

    The copy computes the same function (up to float rounding) but its state_dict has other
    keys: save the original, not the copy.
    """
    from copy import deepcopy

    from blinktrack_ros.models.event_layers import ConvBNAct

    fast = deepcopy(model).eval()
    for module in fast.modules():
        if isinstance(module, ConvBNAct):
            module.fold_batchnorm()
    if channels_last:
        fast = fast.to(memory_format=torch.channels_last)
    return fast


class _FlatStep(nn.Module):
    """`EventNet.forward` on flat tensors (what torch.jit.trace takes and returns)."""

    def __init__(self, model: EventNet) -> None:
        super().__init__()
        self.model = model

    def forward(self, ref_vec: torch.Tensor, ref_mid: torch.Tensor, ref_pool: torch.Tensor,
                h: torch.Tensor, c: torch.Tensor, mem: torch.Tensor, sbt: torch.Tensor
                ) -> tuple[torch.Tensor, ...]:
        disp, logits, new = self.model(EventNetState(ref_vec, ref_mid, ref_pool, h, c, mem), sbt)
        return disp, logits, new.h, new.c, new.mem


class CompiledStep:
    """Base of the event step wrappers that run `EventNet.forward` elsewhere than the eager
    module (a TorchScript trace, an ONNX Runtime session): called like the model; the state
    rows and `init_state` stay the model's. Subclasses implement `_run`."""

    def __init__(self, model: EventNet) -> None:
        self.model = model

    @property
    def config(self) -> EventNetConfig:
        return self.model.config

    def init_state(self, ref_patches: torch.Tensor) -> EventNetState:
        return self.model.init_state(ref_patches)

    def __call__(self, state: EventNetState, sbt: torch.Tensor
                 ) -> tuple[torch.Tensor, torch.Tensor, EventNetState]:
        """Same as `EventNet.forward`."""
        self.model._check_input(sbt, self.config.in_channels)
        if sbt.shape[0] != len(state):
            raise ValueError(f"{sbt.shape[0]} patches for a state of {len(state)} tracks")
        disp, logits, h, c, mem = self._run(state, sbt)
        return disp, logits, EventNetState(state.ref_vec, state.ref_mid, state.ref_pool,
                                           h, c, mem)

    def _run(self, state: EventNetState, sbt: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """(disp, logits, h, c, mem) of one step."""
        raise NotImplementedError


class TracedEventNet(CompiledStep):
    """A frozen TorchScript trace of an inference copy's step, called like the model.

    Tracing removes the Python of ~40 module calls per step and lets TorchScript fuse the
    convolutions with their bias and activation; the track count N stays dynamic. Build it with
    `trace_for_inference`, which checks it against the eager model.
    """

    def __init__(self, model: EventNet, graph: torch.jit.ScriptModule) -> None:
        super().__init__(model)
        self.graph = graph

    def _run(self, state: EventNetState, sbt: torch.Tensor) -> tuple[torch.Tensor, ...]:
        return self.graph(*(getattr(state, f.name) for f in fields(state)), sbt)


def _example_inputs(model: EventNet, n: int, seed: int) -> tuple[EventNetState, torch.Tensor]:
    """A state of n tracks and sparse SBT-like patches in the model's memory format."""
    cfg, fmt = model.config, model._memory_format()
    g = torch.Generator().manual_seed(seed)
    s, device = cfg.patch_size, model.tgt_redir.weight.device
    ref = torch.rand((n, 1, s, s), generator=g).to(device).contiguous(memory_format=fmt)
    sbt = torch.rand((n, cfg.in_channels, s, s), generator=g)
    sbt = (sbt * (sbt > 0.8)).to(device).contiguous(memory_format=fmt)
    state = model.init_state(ref)
    # a recurrent state as after a few steps (not all zeros)
    for _ in range(2):
        _, _, state = model(state, sbt)
    return state, sbt


def trace_for_inference(model: EventNet, check_rows: tuple[int, ...] = (1, 5, 12),
                        rtol: float = 1e-4, atol: float = 1e-5) -> TracedEventNet | None:
    """A TracedEventNet of an eval-mode model (e.g. from `prepare_for_inference`), or None
    when tracing fails or the trace differs from the eager model on `check_rows` tracks
    (then the eager model should be used; a warning is logged)."""
    import logging
    import warnings

    log = logging.getLogger(__name__)
    model = model.eval()
    try:
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # TracerWarnings: shape checks become constants
            state, sbt = _example_inputs(model, 3, 0)
            flat = _FlatStep(model).eval()
            graph = torch.jit.freeze(torch.jit.trace(
                flat, (*(getattr(state, f.name) for f in fields(state)), sbt),
                check_trace=False))
            traced = TracedEventNet(model, graph)
            for i, n in enumerate(check_rows):
                state, sbt = _example_inputs(model, n, i + 1)
                want = model(state, sbt)
                for _ in range(2):  # the profiling executor optimises on the second call
                    got = traced(state, sbt)
                for a, b in zip((*got[:2], got[2].h, got[2].c, got[2].mem),
                                (*want[:2], want[2].h, want[2].c, want[2].mem)):
                    torch.testing.assert_close(a, b, rtol=rtol, atol=atol)
    except Exception as exc:  # noqa: BLE001 - any failure means: use the eager model
        log.warning("event network: TorchScript trace not used (%s)", str(exc).splitlines()[0]
                    if str(exc) else type(exc).__name__)
        return None
    return traced
