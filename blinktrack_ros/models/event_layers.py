"""Building blocks of the event network: conv stages, ConvLSTM cell, FPN encoder, heads."""

from __future__ import annotations

import torch
from torch import nn
import torch.nn.functional as F

from blinktrack_ros.models.event_config import EventNetConfig

LEAK = 0.1


class PointwiseConv2d(nn.Conv2d):
    """A 1x1 conv, computed as one matrix product over all pixels or by the conv kernel,
    whichever was measured faster for its shape.

    Same parameters as nn.Conv2d (so checkpoints are unchanged). On CPU (torch 2.13, oneDNN)
    the matrix product with few output channels is the slow one: (64, 8, 20, 20) -> 8 channels
    took 0.62 ms as a matmul and 0.13 ms as a channels-last conv; with many output channels
    (32 -> 384 at 62x62) the matmul was 1.9x faster, and on maps of a few pixels the conv's
    fixed cost dominates.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(N, c_in, H, W) -> (N, c_out, H, W)."""
        if (self.out_channels < 32 and x.shape[-1] * x.shape[-2] >= 16) or _exporting():
            return F.conv2d(x, self.weight, self.bias)
        pixels = x.permute(0, 2, 3, 1)  # N H W c_in (a view when x is channels-last)
        # a batched matmul: on this CPU build a 2-D (N H W, c_in) @ (c_in, c_out) product with
        # few columns was measured 100x slower than the same product batched over N
        out = torch.matmul(pixels, self.weight.reshape(self.out_channels, -1).t())
        if self.bias is not None:
            out.add_(self.bias)  # N H W c_out (out is a fresh tensor)
        return out.permute(0, 3, 1, 2)


def _exporting() -> bool:
    """Inside an ONNX export: the 1x1 convolutions stay Conv nodes (ONNX Runtime runs, and
    quantises, a Conv faster than the matrix-product form that is faster in eager torch)."""
    return bool(torch.onnx.is_in_onnx_export())


def make_conv(c_in: int, c_out: int, kernel: int, stride: int = 1, pad: int = 0,
              bias: bool = True) -> nn.Conv2d:
    """nn.Conv2d, or PointwiseConv2d for a plain 1x1 conv."""
    if kernel == 1 and stride == 1 and pad == 0:
        return PointwiseConv2d(c_in, c_out, 1, bias=bias)
    return nn.Conv2d(c_in, c_out, kernel, stride=stride, padding=pad, bias=bias)


class ConvBNAct(nn.Module):
    """Conv (no bias) -> BatchNorm -> LeakyReLU(0.1)."""

    def __init__(self, c_in: int, c_out: int, kernel: int, pad: int = 0, stride: int = 1):
        super().__init__()
        self.conv = make_conv(c_in, c_out, kernel, stride, pad, bias=False)
        self.bn = nn.BatchNorm2d(c_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(N, c_in, H, W) -> (N, c_out, H', W')."""
        return F.leaky_relu(self.bn(self.conv(x)), LEAK, inplace=True)

    def fold_batchnorm(self) -> None:
        """Fold the (eval-mode) BatchNorm into the conv weights; inference only."""
        if isinstance(self.bn, nn.Identity):
            return
        bn, conv = self.bn, self.conv
        scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)  # c_out
        folded = make_conv(conv.in_channels, conv.out_channels, conv.kernel_size[0],
                           conv.stride[0], conv.padding[0], bias=True)
        with torch.no_grad():
            folded.weight.copy_(conv.weight * scale[:, None, None, None])
            folded.bias.copy_(bn.bias - bn.running_mean * scale)
        self.conv, self.bn = folded, nn.Identity()


class ConvStage(nn.Module):
    """n ConvBNAct layers, optionally followed by a 2x2 stride-2 conv + ReLU (downsampling)."""

    def __init__(self, c_in: int, c_out: int, kernel: int, n_convs: int, pad: int = 0,
                 stride: int = 1, down: bool = False):
        super().__init__()
        self.convs = nn.ModuleList(
            ConvBNAct(c_in if i == 0 else c_out, c_out, kernel, pad, stride)
            for i in range(n_convs))
        self.down = nn.Conv2d(c_out, c_out, 2, stride=2) if down else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(N, c_in, H, W) -> (N, c_out, H', W')."""
        for layer in self.convs:
            x = layer(x)
        if self.down is not None:
            x = F.relu(self.down(x))
        return x


class ConvLSTMCell(nn.Module):
    """Convolutional LSTM cell; the state (h, c) is passed in and returned."""

    def __init__(self, channels: int, kernel: int):
        super().__init__()
        self.gates = nn.Conv2d(2 * channels, 4 * channels, kernel, padding=kernel // 2)

    def forward(self, x: torch.Tensor, h: torch.Tensor, c: torch.Tensor
                ) -> tuple[torch.Tensor, torch.Tensor]:
        """x, h, c: (N, C, s, s) -> new (h, c). Gate order: input, forget, output, cell."""
        if self.gates.kernel_size == (1, 1) and not _exporting():
            return self._forward_1x1(x, h, c)
        i, f, o, g = self.gates(torch.cat([x, h], 1)).chunk(4, 1)
        c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
        h = torch.sigmoid(o) * torch.tanh(c)
        return h, c

    def _forward_1x1(self, x: torch.Tensor, h: torch.Tensor, c: torch.Tensor
                     ) -> tuple[torch.Tensor, torch.Tensor]:
        """The same cell with a 1x1 gate convolution as one matrix product over the (N*s*s)
        pixel rows, and one sigmoid over the three sigmoid gates: 1.5-2x faster on a CPU at
        64 tracks than a 1x1 convolution and four gate calls on channel slices. Returns
        channels-last (h, c) (what the next convolution wants)."""
        ch, hh, ww = c.shape[1:]
        rows = torch.cat([x, h], 1).permute(0, 2, 3, 1).reshape(-1, 2 * ch)
        weight = self.gates.weight.reshape(4 * ch, 2 * ch)
        gates = F.linear(rows, weight, self.gates.bias)  # (N*s*s, 4C): i, f, o, g
        sig = torch.sigmoid(gates[:, :3 * ch])
        c_rows = sig[:, ch:2 * ch] * c.permute(0, 2, 3, 1).reshape(-1, ch) \
            + sig[:, :ch] * torch.tanh(gates[:, 3 * ch:])
        h_rows = sig[:, 2 * ch:] * torch.tanh(c_rows)
        return (h_rows.reshape(-1, hh, ww, ch).permute(0, 3, 1, 2),
                c_rows.reshape(-1, hh, ww, ch).permute(0, 3, 1, 2))


class FPNEncoder(nn.Module):
    """Six-stage bottom-up encoder with a top-down pathway back to full resolution."""

    def __init__(self, c_in: int, cfg: EventNetConfig):
        super().__init__()
        widths = (*cfg.enc_channels, cfg.feature_dim)
        k, n, fd = cfg.enc_kernels, cfg.enc_convs, cfg.feature_dim
        stages = []
        for i in range(6):
            stride, pad = (2, k[i] // 2) if i == 1 else (1, k[i] // 2 if i == 0 else 0)
            stages.append(ConvStage(c_in if i == 0 else widths[i - 1], widths[i], k[i], n[i],
                                    pad=pad, stride=stride, down=(i == 4)))
        self.stages = nn.ModuleList(stages)
        # lateral[i] / smooth[i] serve encoder stage i (i = 0..4), stage 5 is the top
        self.lateral = nn.ModuleList(make_conv(w, fd, 1) for w in cfg.enc_channels)
        pad = cfg.fpn_kernel // 2
        self.smooth = nn.ModuleList(make_conv(fd, fd, cfg.fpn_kernel, pad=pad)
                                    for _ in range(5))
        self.out_block = ConvStage(fd, fd, cfg.fpn_kernel, 1, pad=pad)
        self.out_conv = make_conv(fd, fd, cfg.fpn_kernel, pad=pad)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(N, c_in, S, S) -> (N, F, S, S)."""
        skips = []
        for stage in self.stages:
            x = stage(x)
            skips.append(x)
        p = skips[5]
        for i in range(4, -1, -1):
            up = F.interpolate(p, size=skips[i].shape[-2:], mode="bilinear", align_corners=False)
            p = self.smooth[i](self.lateral[i](skips[i]) + up)
        return self.out_conv(self.out_block(p))


class MotionHead(nn.Module):
    """Joint input -> ConvLSTM -> gated displacement state -> (dx, dy)."""

    def __init__(self, cfg: EventNetConfig):
        super().__init__()
        c1, c2, c3 = cfg.motion_channels
        self.block1 = ConvStage(cfg.joint_channels, c1, 3, cfg.head_convs, pad=1, down=True)
        self.block2 = ConvStage(c1, c2, 3, cfg.head_convs, pad=1, down=True)
        self.lstm = ConvLSTMCell(c2, cfg.lstm_kernel)
        self.block3 = ConvStage(c2, c3, 3, cfg.head_convs, pad=1, down=True)
        self.block4 = ConvStage(c3, cfg.embed_dim, cfg.motion_final_kernel, 1)
        e = cfg.embed_dim
        self.fuse1 = nn.Linear(2 * e, e)
        self.fuse2 = nn.Linear(e, e)
        self.gate = nn.Linear(2 * e, e)
        self.out = nn.Linear(e, cfg.out_dim)
        self.regress = nn.Linear(cfg.out_dim, 2, bias=False)

    def forward(self, joint: torch.Tensor, h: torch.Tensor, c: torch.Tensor, mem: torch.Tensor
                ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """joint (N, J, C, C), h/c (N, c2, s, s), mem (N, E) -> (disp (N, 2), h, c, mem)."""
        x = self.block2(self.block1(joint))
        h, c = self.lstm(x, h, c)
        x = self.block4(self.block3(h)).flatten(1).float()  # N E
        # the small fully connected part stays float32 under autocast: the displacement and
        # its recurrent memory need sub-pixel precision that bfloat16 (8 bits) does not give
        with torch.autocast(x.device.type, enabled=False):
            x = F.leaky_relu(self.fuse1(torch.cat([x, mem.float()], 1)), LEAK)
            x = F.leaky_relu(self.fuse2(x), LEAK)
            g = torch.sigmoid(self.gate(torch.cat([mem, x], 1)))
            mem = mem * g + x * (1.0 - g)
            disp = self.regress(F.leaky_relu(self.out(mem), LEAK))
        return disp, h, c, mem


class VisibilityHead(nn.Module):
    """Joint input -> five conv blocks -> 2 logits [occluded, visible]."""

    def __init__(self, cfg: EventNetConfig):
        super().__init__()
        widths, kernels = cfg.vis_channels, cfg.vis_kernels
        self.stages = nn.ModuleList(
            ConvStage(cfg.joint_channels if i == 0 else widths[i - 1], widths[i], kernels[i],
                      cfg.head_convs, down=(i == 3)) for i in range(5))
        self.linear = nn.Linear(widths[-1], 2, bias=False)

    def forward(self, joint: torch.Tensor) -> torch.Tensor:
        """(N, J, C, C) -> (N, 2) logits."""
        for stage in self.stages:
            joint = stage(joint)
        return self.linear(joint.flatten(1))


def centre_crop(x: torch.Tensor, size: int) -> torch.Tensor:
    """Centre crop (N, C, S, S) -> (N, C, size, size), keeping the geometric centre.

    When S - size is odd the crop is taken one pixel larger and 2x2-averaged (stride 1), so
    the output centre stays at the input centre.
    """
    s = x.shape[-1]
    if (s - size) % 2:
        e = (s - size - 1) // 2
        return F.avg_pool2d(x[..., e:s - e, e:s - e], 2, stride=1)
    e = (s - size) // 2
    return x[..., e:s - e, e:s - e]


def centre_vector(x: torch.Tensor) -> torch.Tensor:
    """Feature at the geometric centre of (N, C, S, S) -> (N, C) (2x2 mean for even S)."""
    s = x.shape[-1]
    if s % 2:
        return x[..., s // 2, s // 2]
    return x[..., s // 2 - 1:s // 2 + 1, s // 2 - 1:s // 2 + 1].mean(dim=(-1, -2))
