"""Event observation source: SBT-Max patches around fused positions -> EventNet observations.

Pixel convention: pixel centres at integer coordinates. An SBT-Max patch of even side S built
around the integer centre ci = floor(p + 0.5) has index [S // 2, S // 2] at sensor pixel ci, so
its geometric centre (where the network's zero displacement points) is at ci - 0.5. Reference
patches are sampled bilinearly so that their geometric centre is exactly the track's birth
position. Observed position = patch geometric centre + predicted displacement.
"""

from __future__ import annotations

from collections.abc import Callable
import contextlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from blinktrack_ros.events.batch import EventBatch
from blinktrack_ros.models.event_net import (
    EventNet,
    EventNetState,
    cat_states,
    forward_chunked,
    prepare_for_inference,
    put_rows,
    select_rows,
    trace_for_inference,
)
from blinktrack_ros.models.uncertainty import logits_to_covariance
from blinktrack_ros.tracking.observation import Observations, Source

PatchFn = Callable[..., np.ndarray]
RUNTIMES = ("torch", "onnxruntime")  # event_source.runtime


@dataclass(frozen=True)
class EventSourceConfig:
    """Settings of the event source.

    Attributes:
        r_max: covariance scale r at p_vis = 0 (px^2).
        thre: 1 - p_vis at which r = 1 px^2.
        device: torch device of the network.
        fast_inference: fold BatchNorm, channels-last memory and a frozen TorchScript trace
            checked against the eager copy (same function, faster).
        bf16: run the network under bfloat16 autocast (about 4x faster for `paper` on CPUs
            with AMX, see `blinktrack bench event-net`; outputs differ at the 1e-2 level).
        max_batch: tracks per network forward; 0 = `auto_chunk_rows` (2 for paper).
        compile: torch.compile the step with a dynamic track count (one compile of ~30 s at
            the first observe; then ~1.4x faster for lite at N = 64 on 2 cores).
        runtime: what runs the network step: torch (the frozen TorchScript trace, torch's
            threads) or onnxruntime (CPU only, `pip install onnxruntime onnx`; one thread of
            its own, leaving the other cores to the frames; see `models.event_onnx`).
        onnx_model: onnxruntime: an ONNX file of the step made from the same weights, by path
            or shipped name (event_lite3_int8.onnx: the default weights in int8, about 1.8x
            faster than torch on one thread, tracking within 0.005 feature age); empty =
            export the loaded weights at start (float, the same function).
    """

    r_max: float = 10.0
    thre: float = 0.9
    device: str = "cpu"
    fast_inference: bool = True
    bf16: bool = False
    max_batch: int = 0
    compile: bool = False
    runtime: str = field(default="torch", metadata={"choices": RUNTIMES})
    onnx_model: str = ""

    def __post_init__(self) -> None:
        if self.runtime not in RUNTIMES:
            raise ValueError(f"event_source.runtime {self.runtime!r}: one of {RUNTIMES}")
        if self.runtime == "onnxruntime" and torch.device(self.device).type != "cpu":
            raise ValueError("event_source.runtime onnxruntime runs on the CPU only, not on "
                             f"{self.device!r}")
        if self.runtime == "onnxruntime" and (self.bf16 or self.compile):
            raise ValueError("event_source.bf16 and event_source.compile apply to the torch "
                             "runtime, not to onnxruntime")
        if self.onnx_model and self.runtime != "onnxruntime":
            raise ValueError("event_source.onnx_model is set but event_source.runtime is "
                             f"{self.runtime!r} (set it to onnxruntime)")


def crop_patches(frame: np.ndarray, centres_px: np.ndarray, size: int) -> np.ndarray:
    """Bilinear (N, size, size) float32 crops whose geometric centres are at centres_px.

    Args:
        frame: (H, W) grayscale image; uint8 is scaled to [0, 1], uint16 by 1/65535, float
            is used as given (expected in [0, 1]).
        centres_px: (N, 2) pixel xy; patch index (i, j) samples (x + j - (size - 1) / 2,
            y + i - (size - 1) / 2). Outside the image reads 0.
        size: patch side S.
    """
    if frame.ndim != 2:
        raise ValueError(f"expected an (H, W) grayscale frame, got shape {frame.shape}")
    scale = {np.dtype(np.uint8): 1 / 255, np.dtype(np.uint16): 1 / 65535}.get(frame.dtype, 1.0)
    h, w = frame.shape
    padded = np.zeros((h + 2, w + 2), np.float32)  # one zero pixel around: outside reads 0
    padded[1:-1, 1:-1] = frame * np.float32(scale)
    centres = np.asarray(centres_px, dtype=np.float64).reshape(-1, 2)
    offs = np.arange(size) - (size - 1) / 2.0
    gx = np.clip(centres[:, 0, None] + offs[None, :] + 1, 0, w + 1)  # N S, padded coords
    gy = np.clip(centres[:, 1, None] + offs[None, :] + 1, 0, h + 1)
    x0 = np.minimum(np.floor(gx).astype(np.int64), w)
    y0 = np.minimum(np.floor(gy).astype(np.int64), h)
    fx, fy = (gx - x0)[:, None, :], (gy - y0)[:, :, None]  # N 1 S, N S 1
    rows0, rows1 = y0[:, :, None], y0[:, :, None] + 1
    cols0, cols1 = x0[:, None, :], x0[:, None, :] + 1
    top = padded[rows0, cols0] * (1 - fx) + padded[rows0, cols1] * fx
    bottom = padded[rows1, cols0] * (1 - fx) + padded[rows1, cols1] * fx
    return (top * (1 - fy) + bottom * fy).astype(np.float32)  # N S S


def _onnx_file(name: str) -> Path:
    """An ONNX file by path, or by its name among the shipped weights (`weights/`)."""
    from blinktrack_ros.resources import find_share_file

    path = Path(name).expanduser()
    if path.is_file():
        return path
    try:
        return find_share_file(f"weights/{name}")
    except FileNotFoundError:
        raise FileNotFoundError(f"event_source.onnx_model: no file {name!r} (neither a path "
                                "nor a shipped weights file)") from None


def _default_patch_fn() -> PatchFn:
    from blinktrack_ros.events.sbt import sbt_max_patches

    return sbt_max_patches


class EventSource:
    """Runs the event network for all observed tracks in one batch per event window.

    Holds the per-track recurrent state (rows in `track_ids` order). Counters in `stats`:
    `nan_dropped` (non-finite network output), `unknown_ids` (observe/remove of ids without
    a row), `bad_positions` (non-finite query positions).
    """

    def __init__(self, model: EventNet, config: EventSourceConfig | None = None,
                 patch_fn: PatchFn | None = None):
        self.config = config or EventSourceConfig()
        model = model.to(self.config.device).eval()
        # (log_r0, slope) fitted for these weights, if their checkpoint has it
        self.fusion_noise = getattr(model, "fusion_noise", None)
        self.net = prepare_for_inference(model) if self.config.fast_inference else model
        if self.config.runtime == "onnxruntime":
            from blinktrack_ros.models.event_onnx import OnnxEventNet

            graph = _onnx_file(self.config.onnx_model).read_bytes() \
                if self.config.onnx_model else None
            self._step_net = OnnxEventNet(model, graph, threads=1)
        elif self.config.compile:
            self._step_net = torch.compile(self.net, dynamic=True)
        elif self.config.fast_inference and not self.config.bf16:
            # a frozen TorchScript trace, checked against the eager copy (which is kept when
            # the trace fails or differs): 1.4-1.8x faster for lite at N = 64 on one thread
            self._step_net = trace_for_inference(self.net) or self.net
        else:
            self._step_net = self.net
        self.net_config = model.config
        self._patch_fn = patch_fn
        self._state: EventNetState | None = None
        self._ids = np.zeros(0, np.uint32)
        self.stats = {"nan_dropped": 0, "unknown_ids": 0, "bad_positions": 0}
        # ids whose output was non-finite since the pipeline last took them (it ends them)
        self.nonfinite_ids = np.zeros(0, np.uint32)

    @property
    def step_runtime(self) -> str:
        """What runs the network step (for diagnostics): `torch trace`, `torch compile`,
        `torch eager`, `onnxruntime float` or `onnxruntime int8`."""
        net = self._step_net
        if hasattr(net, "quantized"):  # models.event_onnx.OnnxEventNet
            return f"onnxruntime {'int8' if net.quantized else 'float'}"
        if self.config.compile:
            return "torch compile"
        return "torch trace" if hasattr(net, "graph") else "torch eager"

    @property
    def track_ids(self) -> np.ndarray:
        """(M,) uint32 ids of the tracks that have a state row, in row order."""
        return self._ids.copy()

    def _tensor(self, x: np.ndarray) -> torch.Tensor:
        if not self.config.fast_inference:
            return torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32)).to(
                self.config.device)
        # channels-last: SBT patches already have that memory order (no copy here)
        x = np.asarray(x, dtype=np.float32)
        if min(x.strides, default=0) < 0:  # torch.from_numpy takes no negative strides
            x = np.ascontiguousarray(x)
        t = torch.from_numpy(x).to(self.config.device)
        return t.contiguous(memory_format=torch.channels_last)

    def add_tracks(self, ids: np.ndarray, ref_patches: np.ndarray | None = None, *,
                   frame: np.ndarray | None = None,
                   positions_px: np.ndarray | None = None) -> None:
        """Create state rows for new tracks (reference features are computed once, here).

        Args:
            ids: (N,) new track ids (must not exist yet).
            ref_patches: (N, S, S) or (N, 1, S, S) grayscale reference patches in [0, 1],
                centred on the birth positions; or None when frame and positions_px are given.
            frame: (H, W) grayscale frame of the birth time (see `crop_patches`).
            positions_px: (N, 2) pixel xy birth positions in `frame`.
        """
        ids = np.asarray(ids, dtype=np.uint32).reshape(-1)
        s = self.net_config.patch_size
        if ref_patches is None:
            if frame is None or positions_px is None:
                raise ValueError("give ref_patches, or frame and positions_px")
            ref_patches = crop_patches(frame, positions_px, s)
        ref = np.asarray(ref_patches, dtype=np.float32).reshape(-1, 1, s, s)
        if ref.shape[0] != ids.shape[0]:
            raise ValueError(f"{ids.shape[0]} ids but {ref.shape[0]} reference patches")
        dup = np.intersect1d(ids, self._ids)
        if dup.size or np.unique(ids).size != ids.size:
            raise ValueError(f"track ids already present or repeated: {dup[:5].tolist()}")
        if ids.size == 0:
            return
        with torch.inference_mode(), self._autocast():
            rows = self.net.init_state(self._tensor(ref))
            self._state = rows if self._state is None else cat_states([self._state, rows])
        self._ids = np.concatenate([self._ids, ids])

    def remove_tracks(self, ids: np.ndarray) -> int:
        """Delete the rows of dead tracks; returns how many were removed (unknown: counted)."""
        ids = np.asarray(ids, dtype=np.uint32).reshape(-1)
        gone = np.isin(self._ids, ids)
        self.stats["unknown_ids"] += int(ids.size - np.isin(ids, self._ids).sum())
        if gone.any():
            keep = np.flatnonzero(~gone)
            with torch.inference_mode():
                self._state = select_rows(self._state, torch.from_numpy(keep)) if keep.size \
                    else None
            self._ids = self._ids[keep]
        return int(gone.sum())

    def observe(self, events: EventBatch, t1_ns: int, window_ns: int, ids: np.ndarray,
                positions_px: np.ndarray) -> Observations:
        """One event step: observations at t1_ns for the given tracks.

        Args:
            events: events covering the window (t1_ns - window_ns, t1_ns].
            t1_ns: window end (observation time), ns.
            window_ns: window length, ns.
            ids: (N,) track ids to observe (their recurrent state advances one step).
            positions_px: (N, 2) fused pixel xy of those tracks at t1_ns (patch centres).

        Returns:
            Observations (source EVENT) for the tracks with a state row, finite query
            position and finite network output; the others are dropped and counted.
        """
        ids = np.asarray(ids, dtype=np.uint32).reshape(-1)
        pos = np.asarray(positions_px, dtype=np.float64).reshape(-1, 2)
        if pos.shape[0] != ids.shape[0]:
            raise ValueError(f"{ids.shape[0]} ids but {pos.shape[0]} positions")
        if ids.shape == self._ids.shape and np.array_equal(ids, self._ids):
            rows = np.arange(ids.size, dtype=np.int64)  # every row, in order (unique ids)
        else:
            if np.unique(ids).size != ids.size:
                raise ValueError("observe got a track id more than once")
            row_of = {int(i): r for r, i in enumerate(self._ids)}
            rows = np.array([row_of.get(int(i), -1) for i in ids], dtype=np.int64)
        finite_pos = np.isfinite(pos).all(axis=1)
        self.stats["unknown_ids"] += int((rows < 0).sum())
        self.stats["bad_positions"] += int((~finite_pos & (rows >= 0)).sum())
        ok = (rows >= 0) & finite_pos
        ids, pos, rows = ids[ok], pos[ok], rows[ok]
        if ids.size == 0:
            return Observations.empty(Source.EVENT, t1_ns)
        s = self.net_config.patch_size
        centres = np.floor(pos + 0.5)  # integer patch centres ci
        patch_fn = self._patch_fn or _default_patch_fn()
        sbt = patch_fn(events, int(t1_ns), int(window_ns), centres, size=s,
                       bins=self.net_config.in_channels // 2)
        disp, logits, good = self._step(rows, self._tensor(sbt))
        self.stats["nan_dropped"] += int((~good).sum())
        if not good.all():
            self.nonfinite_ids = np.union1d(self.nonfinite_ids, ids[~good]).astype(np.uint32)
        cov, p_vis = logits_to_covariance(torch.from_numpy(logits[good]), self.config.r_max,
                                          self.config.thre)
        geometric_centre = centres + ((s - 1) / 2.0 - s // 2)  # ci - 0.5 for even S
        return Observations(Source.EVENT, int(t1_ns), ids[good],
                            geometric_centre[good] + disp[good].astype(np.float64),
                            cov.numpy().astype(np.float64), p_vis.numpy().astype(np.float64))

    def _step(self, rows: np.ndarray, sbt: torch.Tensor
              ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Run the network on the given state rows; keep the old state where output is NaN."""
        state = self._state
        assert state is not None
        with torch.inference_mode(), self._autocast():
            whole = rows.size == len(state) and bool((rows == np.arange(rows.size)).all())
            rows_t = torch.from_numpy(rows).to(sbt.device)
            part = state if whole else select_rows(state, rows_t)
            disp, logits, new = forward_chunked(self._step_net, part, sbt,
                                                self.config.max_batch or None)
            # finiteness in numpy (float32 CPU outputs are viewed, not copied): on 64 rows a
            # tenth of the cost of the torch calls
            disp_np, logits_np = disp.float().cpu().numpy(), logits.float().cpu().numpy()
            good = np.isfinite(disp_np).all(1) & np.isfinite(logits_np).all(1)
            if good.all() and whole:
                self._state = new
            elif good.any():
                keep = torch.from_numpy(np.flatnonzero(good)).to(rows_t.device)
                self._state = put_rows(state, rows_t[keep], select_rows(new, keep))
        return disp_np.astype(np.float64), logits_np, good

    def _autocast(self) -> torch.autocast | contextlib.nullcontext:
        if not self.config.bf16:  # (building a disabled autocast context costs per call)
            return contextlib.nullcontext()
        device_type = torch.device(self.config.device).type
        return torch.autocast(device_type, dtype=torch.bfloat16, enabled=True)
