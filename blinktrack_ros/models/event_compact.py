"""The compact event network (`arch="compact"`): the method's structure in few, wide ops.

Designed to the measured CPU cost model (docs/networks_cost.md): on 2 cores the time of a
small-batch step is set by the number of operator calls (~50-100 us each), not by their
arithmetic, so this network spends its budget on width rather than depth:

- one encoder per input (reference frame patch, SBT-Max patch): a stride-2 stem, one 3x3 conv
  and a 1x1 conv whose output holds both the correlation features (F) and the redirected
  features (R): 3 convolutions in all, BatchNorm folded at inference;
- the correlation the paper uses: softmax over all positions of the target map of its dot
  product with the reference feature at the patch centre; its expectation (soft-argmax) is a
  coarse displacement that the motion head refines (a residual, so the head learns only the
  correction);
- one ConvLSTM cell (a single 3x3 gate convolution) on [correlation, target and reference
  redirected features], the gated displacement memory of the paper, and two outputs from the
  same trunk: displacement (dx, dy) and visibility logits [occluded, visible] (the uncertainty).

The state is an `EventNetState` (ref_vec, ref_mid = redirected reference map, ref_pool =
empty, h, c, mem), so trackers, chunking, row selection and tracing work unchanged.
"""

from __future__ import annotations

import math

import torch
from torch import nn
import torch.nn.functional as F

from blinktrack_ros.models.event_config import EventNetConfig
from blinktrack_ros.models.event_layers import LEAK, ConvBNAct, ConvLSTMCell, make_conv
from blinktrack_ros.models.event_net import EventNet, EventNetState


class CompactEncoder(nn.Module):
    """(N, c_in, S, S) -> (N, F + R, S/2, S/2): stride-2 stem, 3x3 conv, 1x1 output conv."""

    def __init__(self, c_in: int, cfg: EventNetConfig):
        super().__init__()
        c1, c2 = cfg.enc_channels[0], cfg.enc_channels[1]
        k = cfg.enc_kernels[0]
        self.stem = ConvBNAct(c_in, c1, k, pad=k // 2, stride=2)
        self.conv = ConvBNAct(c1, c2, 3, pad=1)
        self.out = make_conv(c2, cfg.feature_dim + cfg.redir_dim, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out(self.conv(self.stem(x)))


class CompactEventNet(EventNet):
    """See the module docstring. Built by `EventNet(config)` when config.arch == "compact"."""

    def __init__(self, config: EventNetConfig | None = None):
        nn.Module.__init__(self)
        self.config = cfg = config or EventNetConfig.lite2()
        c1, c2, c3 = cfg.motion_channels
        s = cfg.patch_size // 2  # feature map side
        self.ref_encoder = CompactEncoder(1, cfg)
        self.tgt_encoder = CompactEncoder(cfg.in_channels, cfg)
        # a named handle on the last target conv (device / memory-format probes of EventNet)
        self.tgt_redir = self.tgt_encoder.out
        self.block1 = ConvBNAct(1 + 2 * cfg.redir_dim, c1, 3, pad=1, stride=2)
        self.lstm = ConvLSTMCell(c2, cfg.lstm_kernel) if c1 == c2 else None
        if self.lstm is None:
            raise ValueError("compact event net: motion_channels[0] must equal [1] (LSTM input)")
        self.block2 = ConvBNAct(c2, c3, 3, pad=1, stride=2)
        e = cfg.embed_dim
        self.embed = nn.Linear(c3 * (s // 4) ** 2 + 2, e)
        self.fuse = nn.Linear(2 * e, e)
        self.gate = nn.Linear(2 * e, e)
        self.out = nn.Linear(e, cfg.out_dim)
        self.regress = nn.Linear(cfg.out_dim, 2)
        nn.init.zeros_(self.regress.weight)  # start from the soft-argmax displacement
        nn.init.zeros_(self.regress.bias)
        self.visibility = nn.Linear(2 * e, 2)
        # soft-argmax grid: displacement (px, from the patch's geometric centre) of each cell
        cells = torch.arange(s, dtype=torch.float32) * 2.0 - (cfg.patch_size - 1) / 2.0
        gy, gx = torch.meshgrid(cells, cells, indexing="ij")
        self.register_buffer("grid", torch.stack([gx.reshape(-1), gy.reshape(-1)], 1),
                             persistent=False)  # s*s 2

    def init_state(self, ref_patches: torch.Tensor) -> EventNetState:
        """New state rows from (N, 1, S, S) grayscale reference patches in [0, 1]."""
        cfg = self.config
        self._check_input(ref_patches, 1)
        f = self.ref_encoder(ref_patches)  # N F+R s s
        c = cfg.patch_size // 4  # cell of the patch centre pixel S/2
        ref_vec = f[:, :cfg.feature_dim, c, c]  # N F
        fmt = self._memory_format()
        ref_map = f[:, cfg.feature_dim:].contiguous(memory_format=fmt)  # N R s s
        n, side = ref_patches.shape[0], cfg.patch_size // 4
        zeros = ref_patches.new_zeros((n, cfg.motion_channels[1], side, side)).contiguous(
            memory_format=fmt)
        return EventNetState(ref_vec.contiguous(), ref_map, ref_patches.new_zeros((n, 0)),
                             zeros, zeros.clone(), ref_patches.new_zeros((n, cfg.embed_dim)))

    def forward(self, state: EventNetState, sbt: torch.Tensor
                ) -> tuple[torch.Tensor, torch.Tensor, EventNetState]:
        """One event step for all N tracks; same contract as `EventNet.forward`."""
        cfg = self.config
        self._check_input(sbt, cfg.in_channels)
        if sbt.shape[0] != len(state):
            raise ValueError(f"{sbt.shape[0]} patches for a state of {len(state)} tracks")
        n = sbt.shape[0]
        f = self.tgt_encoder(sbt)  # N F+R s s
        feat, redir = f[:, :cfg.feature_dim], f[:, cfg.feature_dim:]
        hh, ww = feat.shape[-2:]
        scale = 1.0 / math.sqrt(cfg.feature_dim)
        corr = torch.einsum("nfhw,nf->nhw", feat, state.ref_vec.to(feat.dtype)) * scale
        prob = torch.softmax(corr.reshape(n, hh * ww).float(), dim=1)  # N s*s
        coarse = prob @ self.grid  # N 2: soft-argmax displacement in px
        joint = torch.cat([prob.reshape(n, 1, hh, ww).to(redir.dtype), redir,
                           state.ref_mid.to(redir.dtype)], 1)
        x = self.block1(joint)
        h, c = self.lstm(x, state.h.to(x.dtype), state.c.to(x.dtype))
        y = self.block2(h).flatten(1).float()  # N c3*(s/4)^2
        # the small fully connected part stays float32 under autocast (sub-pixel outputs)
        with torch.autocast(y.device.type, enabled=False):
            y = F.leaky_relu(self.embed(torch.cat([y, coarse * (2.0 / cfg.patch_size)], 1)),
                             LEAK)
            mem = state.mem.float()
            z = F.leaky_relu(self.fuse(torch.cat([y, mem], 1)), LEAK)
            g = torch.sigmoid(self.gate(torch.cat([mem, z], 1)))
            mem = mem * g + z * (1.0 - g)
            disp = coarse + self.regress(F.leaky_relu(self.out(mem), LEAK))
            logits = self.visibility(torch.cat([y, mem], 1))
        return disp, logits, EventNetState(state.ref_vec, state.ref_mid, state.ref_pool,
                                           h, c, mem)
