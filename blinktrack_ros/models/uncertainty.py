"""Network visibility logits -> measurement covariance R (the paper's mapping)."""

from __future__ import annotations

import math

import torch


def exponent_b(r_max: float, thre: float) -> float:
    """Exponent b of r = r_max * u**b such that r = 1 at u = thre (u = 1 - p_vis).

    r_max 10, thre 0.9 gives b = 21.85 (event module); thre 0.5 gives b = 3.32 (image module).
    """
    if not (r_max > 1.0 and 0.0 < thre < 1.0):
        raise ValueError(f"need r_max > 1 and 0 < thre < 1, got r_max={r_max}, thre={thre}")
    return -math.log(r_max) / math.log(thre)


def logits_to_covariance(logits: torch.Tensor, r_max: float, thre: float,
                         r_min: float = 1e-3) -> tuple[torch.Tensor, torch.Tensor]:
    """Map (N, 2) logits [occluded, visible] to (N, 2, 2) R = diag(r, r) and (N,) p_vis.

    r = r_max * (1 - p_vis)**b, clamped below at r_min so that R stays positive definite.
    """
    p_vis = torch.softmax(logits, dim=-1)[..., 1]  # N
    b = exponent_b(r_max, thre)
    r = (r_max * (1.0 - p_vis).clamp_min(0.0) ** b).clamp_min(r_min)  # N
    eye = torch.eye(2, dtype=logits.dtype, device=logits.device)
    return r[:, None, None] * eye, p_vis  # N 2 2, N
