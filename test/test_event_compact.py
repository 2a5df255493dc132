"""The compact event network (lite2 / base): contract, patch geometry, inference paths,
checkpoints (the config selects the architecture; the shipped fpn weights still load)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from blinktrack_ros.models.event_compact import CompactEventNet
from blinktrack_ros.models.event_config import EventNetConfig
from blinktrack_ros.models.event_layers import ConvBNAct
from blinktrack_ros.models.event_net import (
    EventNet,
    EventNetState,
    forward_chunked,
    load_event_net,
    prepare_for_inference,
    save_event_net,
    select_rows,
    trace_for_inference,
)
from blinktrack_ros.tracking.event_source import crop_patches


def lively(model: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    """He-initialised weights, non-trivial BatchNorm statistics and a non-zero regressor, so
    outputs depend on the input (rows cannot be mixed unnoticed)."""
    torch.manual_seed(seed)
    for m in model.modules():
        if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear)):
            torch.nn.init.kaiming_normal_(m.weight, a=0.1)
            if m.bias is not None:
                torch.nn.init.normal_(m.bias, std=0.1)
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.normal_(0, 0.2)
            m.running_var.uniform_(0.5, 2.0)
            torch.nn.init.normal_(m.weight, 1.0, 0.2)
            torch.nn.init.normal_(m.bias, 0.0, 0.2)
    return model


def inputs(cfg: EventNetConfig, n: int, seed: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    s = cfg.patch_size
    sbt = torch.rand((n, cfg.in_channels, s, s), generator=g)
    return torch.rand((n, 1, s, s), generator=g), sbt * (sbt > 0.8)


@pytest.fixture(scope="module")
def net() -> CompactEventNet:
    return lively(EventNet(EventNetConfig.lite2())).eval()


def test_config_selects_the_architecture(net):
    assert type(net) is CompactEventNet and isinstance(net, EventNet)
    assert type(EventNet(EventNetConfig.lite())) is EventNet
    assert sum(p.numel() for p in net.parameters()) > 3 * sum(
        p.numel() for p in EventNet(EventNetConfig.lite()).parameters())
    with pytest.raises(ValueError, match="multiple of 8"):
        EventNetConfig(arch="compact", patch_size=20)
    with pytest.raises(ValueError, match="unknown event net arch"):
        EventNetConfig(arch="resnet")


def test_step_contract_and_rows_are_independent(net):
    ref, sbt = inputs(net.config, 5)
    with torch.no_grad():
        state = net.init_state(ref)
        disp, logits, new = net(state, sbt)
        assert disp.shape == (5, 2) and logits.shape == (5, 2) and len(new) == 5
        # a track's output depends only on its own row
        part = net(select_rows(state, [3, 1]), sbt[[3, 1]])
        torch.testing.assert_close(part[0], disp[[3, 1]], rtol=1e-4, atol=1e-5)
        chunked = forward_chunked(net, state, sbt, max_rows=2)
        torch.testing.assert_close(chunked[0], disp, rtol=1e-4, atol=1e-5)
    with pytest.raises(ValueError, match="expected"):
        net(state, sbt[:, :3])


def test_soft_argmax_grid_follows_the_patch_convention():
    """Cell u of the stride-2 map sits on patch pixel 2u; crop_patches puts patch pixel j at
    centre + j - (S - 1) / 2: a bright dot's position = centre + grid of its cell."""
    cfg = EventNetConfig.lite2()
    s = cfg.patch_size
    grid = CompactEventNet(cfg).grid.numpy()  # (s/2)^2 2, row-major cells
    frame = np.zeros((60, 80), np.float32)
    dot = np.array([41.0, 27.0])
    frame[int(dot[1]), int(dot[0])] = 1.0
    centre = np.array([[36.5, 30.5]])  # a geometric centre of an even patch (ci - 0.5)
    patch = crop_patches(frame, centre, s)[0]
    row, col = np.argwhere(patch == patch.max())[0]
    assert row % 2 == 0 and col % 2 == 0  # the dot falls on a cell centre here
    cell = (row // 2) * (s // 2) + col // 2
    np.testing.assert_allclose(centre[0] + grid[cell], dot)


def test_untrained_displacement_is_the_correlation_soft_argmax():
    """regress starts at zero: the first displacement is the expectation of the correlation."""
    torch.manual_seed(0)
    net = EventNet(EventNetConfig.lite2()).eval()
    ref, sbt = inputs(net.config, 3)
    with torch.no_grad():
        state = net.init_state(ref)
        f = net.tgt_encoder(sbt)
        feat = f[:, :net.config.feature_dim]
        corr = (feat * state.ref_vec[:, :, None, None]).sum(1).flatten(1)
        prob = torch.softmax(corr / net.config.feature_dim ** 0.5, 1)
        want = prob @ net.grid
        disp, _, _ = net(state, sbt)
    torch.testing.assert_close(disp, want, rtol=1e-4, atol=1e-4)


def test_fast_inference_paths_match_the_eager_model(net):
    ref, sbt = inputs(net.config, 7)
    fast = prepare_for_inference(net)
    assert not any(isinstance(m.bn, torch.nn.BatchNorm2d) for m in fast.modules()
                   if isinstance(m, ConvBNAct))
    traced = trace_for_inference(fast)
    assert traced is not None
    cl = torch.channels_last
    with torch.no_grad():
        want = net(net.init_state(ref), sbt)
        state = fast.init_state(ref.contiguous(memory_format=cl))
        got = fast(state, sbt.contiguous(memory_format=cl))
        got_traced = traced(state, sbt.contiguous(memory_format=cl))
    for g in (got, got_traced):
        torch.testing.assert_close(g[0], want[0], rtol=1e-3, atol=1e-3)
        torch.testing.assert_close(g[1], want[1], rtol=1e-3, atol=1e-3)


def test_checkpoints_keep_their_architecture(tmp_path, net):
    path = tmp_path / "lite2.pt"
    save_event_net(path, net)
    loaded = load_event_net(path, expected_config=EventNetConfig.lite2())
    assert type(loaded) is CompactEventNet
    ref, sbt = inputs(net.config, 2)
    with torch.no_grad():
        torch.testing.assert_close(loaded(loaded.init_state(ref), sbt)[0],
                                   net(net.init_state(ref), sbt)[0])
    shipped = load_event_net("weights/event_lite.pt")  # written before `arch` existed
    assert type(shipped) is EventNet and shipped.config.arch == "fpn"
    assert shipped.config == EventNetConfig.lite()


def test_event_source_runs_the_compact_network():
    from blinktrack_ros.events.batch import EventBatch
    from blinktrack_ros.tracking.event_source import EventSource

    rng = np.random.default_rng(0)
    w, h, m = 120, 90, 3000
    events = EventBatch(rng.integers(0, w, m).astype(np.uint16),
                        rng.integers(0, h, m).astype(np.uint16),
                        np.sort(rng.integers(1, 5_000_000, m)).astype(np.int64),
                        rng.integers(0, 2, m).astype(np.uint8), w, h)
    src = EventSource(lively(EventNet(EventNetConfig.lite2())))
    ids = np.arange(4, dtype=np.uint32)
    pos = rng.uniform([20, 20], [w - 20, h - 20], (4, 2))
    src.add_tracks(ids, frame=rng.integers(0, 256, (h, w), dtype=np.uint8), positions_px=pos)
    out = src.observe(events, 5_000_000, 5_000_000, ids, pos)
    assert out is not None
    assert isinstance(src._state, EventNetState) and len(src._state) == 4


def test_cost_model_counts_fewer_operator_calls_for_the_compact_design():
    """The design goal in numbers: lite2 does more arithmetic in fewer operator calls."""
    from blinktrack_ros.bench.cost_model import count_ops
    from blinktrack_ros.bench.event_net import flops_per_track

    lite = prepare_for_inference(EventNet(EventNetConfig.lite()).eval())
    lite2 = prepare_for_inference(EventNet(EventNetConfig.lite2()).eval())
    (_, ops_lite), (_, ops_lite2) = count_ops(lite), count_ops(lite2)
    assert ops_lite2 < 0.6 * ops_lite
    assert flops_per_track(lite2)[0] > 2 * flops_per_track(lite)[0]


@pytest.mark.parametrize("channels_last", [False, True])
def test_1x1_convlstm_rows_path_is_the_convolution_cell(channels_last):
    """lite3's 1x1 gate convolution runs as one matrix product over pixel rows: outputs and
    gradients equal the textbook ConvLSTM equations written with F.conv2d."""
    from blinktrack_ros.models.event_layers import ConvLSTMCell

    torch.manual_seed(3)
    cell = ConvLSTMCell(6, 1)
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    x, h, c = (torch.randn(5, 6, 4, 4).contiguous(memory_format=fmt).requires_grad_()
               for _ in range(3))
    got_h, got_c = cell(x, h, c)
    gates = torch.nn.functional.conv2d(torch.cat([x, h], 1), cell.gates.weight,
                                       cell.gates.bias)
    i, f, o, g = gates.chunk(4, 1)
    want_c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
    want_h = torch.sigmoid(o) * torch.tanh(want_c)
    torch.testing.assert_close(got_h, want_h)
    torch.testing.assert_close(got_c, want_c)
    grads = torch.autograd.grad((got_h.square().sum() + got_c.sum()), (x, h, c,
                                                                          cell.gates.weight))
    want = torch.autograd.grad((want_h.square().sum() + want_c.sum()), (x, h, c,
                                                                          cell.gates.weight))
    for a, b in zip(grads, want):
        torch.testing.assert_close(a, b)
