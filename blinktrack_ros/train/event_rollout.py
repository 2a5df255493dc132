"""Event module rollouts over snippets: losses for both training stages, and predicted tracks.

Conventions are those of `tracking.event_source`: the SBT-Max patch of step k is built around
the integer centre ci = floor(p + 0.5) of the current position p, its geometric centre is
ci + ((S - 1) / 2 - S // 2) (ci - 0.5 for even S), and the observed position is that geometric
centre plus the predicted displacement. Reference patches are bilinear crops of the start frame
centred exactly on the ground-truth birth position.

Losses (per step, averaged over steps):
- displacement: L1 of (predicted - true displacement) summed over x, y, over the tracks that are
  visible and whose true displacement is inside the patch (|d|_inf <= S / 2); the others are
  masked (the truncation of the truncated L1: the network cannot see them);
- visibility: cross-entropy of the logits [occluded, visible] against "visible and inside the
  patch", over every track still inside the image.

Self-rollout: the next patch is centred on this step's observation (stage 1), or on the Kalman
prediction after fusing the observation with its covariance from the logits (stage 2 and
evaluation: the inference path). The filter uses the real window length in seconds as dt.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from blinktrack_ros import kalman
from blinktrack_ros.events.sbt import sbt_max_patches
from blinktrack_ros.models.event_net import EventNet
from blinktrack_ros.models.uncertainty import logits_to_covariance
from blinktrack_ros.tracking.event_source import crop_patches
from blinktrack_ros.train.data import Snippet

WINDOW_NS = 10_000_000


@dataclass(frozen=True)
class FilterSettings:
    """Kalman filter in the loop: process noise and the logits -> covariance mapping."""

    q: float = 1.0e4
    r_max: float = 10.0
    thre: float = 0.9


@dataclass
class RolloutResult:
    """Losses (scalar tensors) and the tracked positions.

    Attributes:
        loss_disp: masked L1 displacement loss.
        loss_vis: visibility cross-entropy.
        positions: (K, N, 2) pixel xy track estimates (row 0: the start positions).
        gt_xy: (K, N, 2) ground truth; gt_vis: (K, N) visibility; times_ns: (K, N) sample times.
        valid_frac: share of (step, track) pairs that took part in the displacement loss.
    """

    loss_disp: torch.Tensor
    loss_vis: torch.Tensor
    positions: np.ndarray
    gt_xy: np.ndarray
    gt_vis: np.ndarray
    times_ns: np.ndarray
    valid_frac: float


def geometric_centre(ci: np.ndarray, size: int) -> np.ndarray:
    """Geometric centre (N, 2) of patches of side size built around integer centres ci."""
    return ci + ((size - 1) / 2.0 - size // 2)


def displacement_loss(disp: torch.Tensor, target: torch.Tensor, visible: torch.Tensor,
                      half_patch: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Masked L1: (N, 2) predicted and true displacement, (N,) bool visible.

    Returns the mean over the kept tracks of |disp - target|_1 (0 when none is kept) and the
    (N,) bool mask of kept tracks (visible and |target|_inf <= half_patch).
    """
    keep = visible & (target.abs().amax(dim=1) <= half_patch)
    err = (disp - target).abs().sum(dim=1)
    loss = (err * keep).sum() / keep.sum().clamp_min(1)
    return loss, keep


def visibility_loss(logits: torch.Tensor, label: torch.Tensor, counted: torch.Tensor
                    ) -> torch.Tensor:
    """Cross-entropy of (N, 2) logits against (N,) bool labels over the (N,) bool counted rows."""
    ce = F.cross_entropy(logits, label.long(), reduction="none")
    return (ce * counted).sum() / counted.sum().clamp_min(1)


def _stack_gt(snippets: list[Snippet]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    xy = np.concatenate([s.xy for s in snippets], axis=1)  # K N 2
    vis = np.concatenate([s.vis for s in snippets], axis=1)  # K N
    times = np.concatenate([np.repeat(s.times_ns[:, None], s.xy.shape[1], 1) for s in snippets],
                           axis=1)  # K N
    return xy, vis, times


def _sbt(snippets: list[Snippet], k: int, centres: np.ndarray, size: int, bins: int
         ) -> np.ndarray:
    parts, row = [], 0
    for s in snippets:
        n = s.xy.shape[1]
        assert s.events is not None, "event snippets need events"
        parts.append(sbt_max_patches(s.events, int(s.times_ns[k]), WINDOW_NS,
                                     centres[row:row + n], size=size, bins=bins))
        row += n
    return np.concatenate(parts)


def initial_filter_state(pos: np.ndarray, gt_xy: np.ndarray, times_ns: np.ndarray,
                         init_velocity: bool) -> torch.Tensor:
    """(N, 4) filter state [x, y, vx, vy] at the start positions: zero velocity, or (with
    init_velocity and at least two samples) the ground truth's over the first window plus
    noise of 20 % of the speed plus 5 px/s per axis (torch's generator)."""
    n = pos.shape[0]
    x = torch.zeros((n, 4), dtype=torch.float64)
    x[:, :2] = torch.from_numpy(pos)
    if init_velocity and gt_xy.shape[0] > 1:
        dt = np.maximum(times_ns[1] - times_ns[0], 1) * 1e-9  # N
        v = torch.from_numpy(np.nan_to_num((gt_xy[1] - gt_xy[0]) / dt[:, None]))
        x[:, 2:] = v + (0.2 * v.abs() + 5.0) * torch.randn(n, 2, dtype=torch.float64)
    return x


# --frame-updates: the frame tracker's (KLT's) position noise in the training loop, px
FRAME_SIGMA_PX = 0.7


def frame_steps(snippets: list[Snippet]) -> np.ndarray:
    """(K, N) bool: a frame of the track's sequence falls in (t_{k-1}, t_k] (k >= 1)."""
    parts = []
    for s in snippets:
        f = np.asarray(s.span_frame_times_ns, np.int64)  # sorted: in (t_0, t_last]
        t = np.asarray(s.times_ns, np.int64)
        hit = np.zeros(t.shape[0], bool)
        hit[1:] = np.searchsorted(f, t[1:], side="right") > np.searchsorted(f, t[:-1],
                                                                            side="right")
        parts.append(np.repeat(hit[:, None], s.xy.shape[1], 1))
    return np.concatenate(parts, axis=1)


def event_rollout(net: EventNet, snippets: list[Snippet], kalman_in_loop: bool,
                  filt: FilterSettings = FilterSettings(), init_velocity: bool = False,
                  frame_updates: bool = False) -> RolloutResult:
    """Run the event network over the snippets' steps (gradients follow torch's grad mode).

    init_velocity: the filter starts moving (`initial_filter_state`): the regime of a tracker
    whose frames already gave it a velocity, where the events measure small residuals.
    frame_updates (with the filter in the loop): after the event update of a step whose
    window holds a frame, a visible track's filter position becomes its ground truth plus
    Gaussian noise of FRAME_SIGMA_PX (position covariance FRAME_SIGMA_PX^2, velocity kept): the
    regime of `e-klt` / `ei`, where frames keep correcting the filter and the events measure
    what moved between them."""
    cfg = net.config
    size, bins = cfg.patch_size, cfg.in_channels // 2
    device = next(net.parameters()).device
    gt_xy, gt_vis, times = _stack_gt(snippets)
    ref = np.concatenate([crop_patches(s.frames[0], s.xy[0], size) for s in snippets])
    state = net.init_state(torch.from_numpy(ref[:, None]).to(device))
    pos = np.concatenate([s.start_xy for s in snippets]).astype(np.float64)
    n, steps = pos.shape[0], gt_xy.shape[0]
    x = initial_filter_state(pos, gt_xy, times, init_velocity)
    P = kalman.initial_covariance(n, like=x)
    positions = [pos.copy()]
    loss_d, loss_v, kept = [], [], 0
    at_frame = frame_steps(snippets) if frame_updates and kalman_in_loop else None
    for k in range(1, steps):
        if kalman_in_loop:
            x, P = kalman.predict(x, P, WINDOW_NS * 1e-9, filt.q)
            pos = x[:, :2].numpy()
        ci = np.floor(pos + 0.5)
        gc = geometric_centre(ci, size)
        sbt = torch.from_numpy(_sbt(snippets, k, ci, size, bins)).to(device)
        disp, logits, state = net(state, sbt)
        target = torch.from_numpy((gt_xy[k] - gc).astype(np.float32)).to(device)
        visible = torch.from_numpy(gt_vis[k] == 1).to(device)
        ld, keep = displacement_loss(disp, target, visible, size / 2.0)
        counted = torch.from_numpy(gt_vis[k] != -1).to(device)
        loss_d.append(ld)
        loss_v.append(visibility_loss(logits, keep, counted))
        kept += int(keep.sum())
        z = gc + disp.detach().double().cpu().numpy()
        if kalman_in_loop:
            R, _ = logits_to_covariance(logits.detach().double().cpu(), filt.r_max, filt.thre)
            x, P = kalman.update(x, P, torch.from_numpy(z), R)
            if at_frame is not None:
                rows = np.flatnonzero(at_frame[k] & (gt_vis[k] == 1))
                if rows.size:  # the frame gives the position (velocity kept)
                    r = torch.from_numpy(rows)
                    zf = torch.from_numpy(gt_xy[k][rows].astype(np.float64)) + \
                        FRAME_SIGMA_PX * torch.randn(rows.size, 2, dtype=torch.float64)
                    x, P = x.clone(), P.clone()
                    x[r, :2] = zf
                    Pr = P[r]
                    Pr[:, :2, :] = 0.0
                    Pr[:, :, :2] = 0.0
                    Pr[:, 0, 0] = Pr[:, 1, 1] = FRAME_SIGMA_PX ** 2
                    P[r] = Pr
            pos = x[:, :2].numpy().copy()
        else:
            pos = z
        positions.append(pos.copy())
    return RolloutResult(torch.stack(loss_d).mean(), torch.stack(loss_v).mean(),
                         np.stack(positions), gt_xy, gt_vis, times,
                         kept / max(1, n * (steps - 1)))
