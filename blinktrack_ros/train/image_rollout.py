"""Image module rollouts with the Kalman filter in the loop: losses and predicted tracks.

Per snippet the frames are encoded once; reference features are sampled on the first frame at
the ground-truth birth positions. At each later frame the filter predicts over the real frame
interval (seconds), the network refines from the predicted position (its flow input is measured
from the birth position, as at inference), and the filter fuses the final iteration with the
covariance mapped from the visibility logits (`logits_to_covariance`, image thre).

Losses:
- displacement: sum over iterations i of gamma^(I-1-i) * |position_i - gt|_1, over tracks that
  are visible and whose search starts within `reach_px` (|start - gt|_inf) of the truth; the
  others are masked;
- visibility: cross-entropy of the final logits against "visible", over tracks in the image.
"""

from __future__ import annotations

import numpy as np
import torch

from blinktrack_ros import kalman
from blinktrack_ros.models.image_net import ImageNet
from blinktrack_ros.models.uncertainty import logits_to_covariance
from blinktrack_ros.train.data import Snippet
from blinktrack_ros.train.event_rollout import FilterSettings, RolloutResult, visibility_loss

IMAGE_FILTER = FilterSettings(q=1.0e4, r_max=10.0, thre=0.5)
GAMMA = 0.8


def iteration_loss(iterations: list[tuple[torch.Tensor, torch.Tensor]], gt: torch.Tensor,
                   keep: torch.Tensor, gamma: float = GAMMA) -> torch.Tensor:
    """Discounted L1 over refinement iterations, mean over the (N,) bool kept tracks."""
    n_it = len(iterations)
    total = gt.new_zeros(())
    for i, (pos, _) in enumerate(iterations):
        err = (pos - gt).abs().sum(dim=1)
        total = total + gamma ** (n_it - 1 - i) * (err * keep).sum()
    return total / keep.sum().clamp_min(1)


def _snippet_rollout(net: ImageNet, s: Snippet, filt: FilterSettings, reach_px: float
                     ) -> tuple[list, list, list[np.ndarray], int]:
    device = next(net.parameters()).device
    feats = [net.encode_frame(torch.from_numpy(f).to(device)) for f in s.frames]
    birth = torch.from_numpy(s.xy[0].astype(np.float32)).to(device)
    ref_feats = net.sample_reference(feats[0], birth)
    n = s.xy.shape[1]
    x = torch.zeros((n, 4), dtype=torch.float64)
    x[:, :2] = torch.from_numpy(s.start_xy)
    P = kalman.initial_covariance(n, like=x)
    positions, loss_d, loss_v, kept = [s.start_xy.copy()], [], [], 0
    for k in range(1, len(s.frames)):
        dt = float(s.frame_times_ns[k] - s.frame_times_ns[k - 1]) * 1e-9
        x, P = kalman.predict(x, P, dt, filt.q)
        start = x[:, :2].float().to(device)
        its = net.track_iterations(feats[k], ref_feats, start, ref_positions=birth)
        gt = torch.from_numpy(s.xy[k].astype(np.float32)).to(device)
        visible = torch.from_numpy(s.vis[k] == 1).to(device)
        keep = visible & ((start - gt).abs().amax(dim=1) <= reach_px)
        loss_d.append(iteration_loss(its, gt, keep))
        counted = torch.from_numpy(s.vis[k] != -1).to(device)
        logits = its[-1][1]
        loss_v.append(visibility_loss(logits, visible, counted))
        kept += int(keep.sum())
        R, _ = logits_to_covariance(logits.detach().double().cpu(), filt.r_max, filt.thre)
        x, P = kalman.update(x, P, its[-1][0].detach().double().cpu(), R)
        positions.append(x[:, :2].numpy().copy())
    return loss_d, loss_v, positions, kept


def image_rollout(net: ImageNet, snippets: list[Snippet], filt: FilterSettings = IMAGE_FILTER,
                  reach_px: float | None = None) -> RolloutResult:
    """Track every snippet over its frames (gradients follow torch's grad mode).

    reach_px: None takes the network's own (`net.reach_px`: 24 px for the pyramid network,
    what its patches can see for the patch network)."""
    reach_px = net.reach_px if reach_px is None else reach_px
    loss_d, loss_v, positions, kept, total = [], [], [], 0, 0
    for s in snippets:
        ld, lv, pos, k = _snippet_rollout(net, s, filt, reach_px)
        loss_d += ld
        loss_v += lv
        positions.append(np.stack(pos))
        kept += k
        total += s.xy.shape[1] * (len(s.frames) - 1)
    times = np.concatenate([np.repeat(s.times_ns[:, None], s.xy.shape[1], 1) for s in snippets],
                           axis=1)
    return RolloutResult(torch.stack(loss_d).mean(), torch.stack(loss_v).mean(),
                         np.concatenate(positions, axis=1),
                         np.concatenate([s.xy for s in snippets], axis=1),
                         np.concatenate([s.vis for s in snippets], axis=1), times,
                         kept / max(1, total))
