"""convert-official --event: the authors' parameter names and shapes land in the right modules.

The official state_dict is rebuilt here from the published model code's facts (block names,
widths, kernels; ConvBlock layout: conv at model.3i, BatchNorm at model.3i+1, optional 2x2
downsampling conv at model.3n), filled with random tensors.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from blinktrack_ros.models.checkpoint import CheckpointError
from blinktrack_ros.models.event_convert import convert_event_checkpoint, map_event_state_dict
from blinktrack_ros.models.event_net import EventNet, load_event_net


def _conv_block(sd: dict, prefix: str, c_in: int, c_out: int, k: int, n: int,
                down: bool = False) -> None:
    for i in range(n):
        sd[f"{prefix}.model.{3 * i}.weight"] = (c_out, c_in if i == 0 else c_out, k, k)
        for p in ("weight", "bias", "running_mean", "running_var"):
            sd[f"{prefix}.model.{3 * i + 1}.{p}"] = (c_out,)
        sd[f"{prefix}.model.{3 * i + 1}.num_batches_tracked"] = ()
    if down:
        sd[f"{prefix}.model.{3 * n}.weight"] = (c_out, c_out, 2, 2)
        sd[f"{prefix}.model.{3 * n}.bias"] = (c_out,)


def _conv(sd: dict, prefix: str, c_in: int, c_out: int, k: int) -> None:
    sd[f"{prefix}.weight"] = (c_out, c_in, k, k)
    sd[f"{prefix}.bias"] = (c_out,)


def _linear(sd: dict, prefix: str, f_in: int, f_out: int, bias: bool = True) -> None:
    sd[f"{prefix}.weight"] = (f_out, f_in)
    if bias:
        sd[f"{prefix}.bias"] = (f_out,)


def official_shapes() -> dict[str, tuple]:
    """Names and shapes of BlinkTrack_Event (feature_dim 384, patch 31, 10 input channels)."""
    sd: dict[str, tuple] = {}
    for enc, c_in in (("reference_encoder", 1), ("target_encoder", 10)):
        _conv_block(sd, f"{enc}.conv_bottom_0", c_in, 32, 1, 2)
        _conv_block(sd, f"{enc}.conv_bottom_00", 32, 64, 7, 1)
        _conv_block(sd, f"{enc}.conv_bottom_1", 64, 96, 5, 2)
        _conv_block(sd, f"{enc}.conv_bottom_2", 96, 128, 5, 2)
        _conv_block(sd, f"{enc}.conv_bottom_3", 128, 256, 3, 2, down=True)
        _conv_block(sd, f"{enc}.conv_bottom_4", 256, 384, 3, 2)
        for level, c in (("3", 256), ("2", 128), ("1", 96), ("00", 64), ("0", 32)):
            _conv(sd, f"{enc}.conv_lateral_{level}", c, 384, 1)
            _conv(sd, f"{enc}.conv_dealias_{level}", 384, 384, 3)
        _conv_block(sd, f"{enc}.conv_out.0", 384, 384, 3, 1)
        _conv(sd, f"{enc}.conv_out.1", 384, 384, 3)
    _conv(sd, "reference_redir", 384, 128, 3)
    _conv(sd, "target_redir", 384, 128, 3)
    lp = "lstm_predictor"
    _conv_block(sd, f"{lp}.conv1", 514, 64, 3, 2, down=True)
    _conv_block(sd, f"{lp}.conv2", 64, 128, 3, 2, down=True)
    _conv(sd, f"{lp}.convlstm0.Gates", 256, 512, 3)
    _conv_block(sd, f"{lp}.conv3", 128, 256, 3, 2, down=True)
    _conv_block(sd, f"{lp}.conv4", 256, 256, 3, 1)
    _linear(sd, f"{lp}.gates", 512, 256)
    _linear(sd, f"{lp}.fusion_layer0.0", 512, 256)
    _linear(sd, f"{lp}.fusion_layer0.2", 256, 256)
    _linear(sd, f"{lp}.output_layers.0", 256, 512)
    _linear(sd, "predictor", 512, 2, bias=False)
    up = "uncertainty_predictor"
    _conv_block(sd, f"{up}.conv_bottom_0", 514, 128, 1, 2)
    _conv_block(sd, f"{up}.conv_bottom_1", 128, 64, 5, 2)
    _conv_block(sd, f"{up}.conv_bottom_2", 64, 64, 5, 2)
    _conv_block(sd, f"{up}.conv_bottom_3", 64, 64, 3, 2, down=True)
    _conv_block(sd, f"{up}.conv_bottom_4", 64, 128, 3, 2)
    _linear(sd, f"{up}.linear", 128, 2, bias=False)
    return sd


class HyperParams:
    """Stands for the hydra/omegaconf objects a Lightning checkpoint pickles."""

    def __init__(self) -> None:
        self.lr = 1e-4


@pytest.fixture(scope="module")
def official() -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(7)
    out = {}
    for k, shape in official_shapes().items():
        if k.endswith("num_batches_tracked"):
            out[k] = torch.tensor(5)
        elif k.endswith("running_var"):
            out[k] = torch.rand(shape, generator=g) + 0.5
        else:
            out[k] = torch.randn(shape, generator=g) * 0.05
    return out


def test_converted_checkpoint_loads_strict_with_weights_in_place(official, tmp_path) -> None:
    src, out = tmp_path / "official.ckpt", tmp_path / "event_paper.pt"
    torch.save({"state_dict": official, "hyper_parameters": HyperParams(), "epoch": 3}, src)
    convert_event_checkpoint(src, out)
    model = load_event_net(out)
    assert isinstance(model, EventNet) and model.config.patch_size == 62
    ours = model.state_dict()
    pairs = {
        "target_encoder.conv_bottom_3.model.6.weight": "tgt_encoder.stages.4.down.weight",
        "target_encoder.conv_bottom_3.model.4.running_var":
            "tgt_encoder.stages.4.convs.1.bn.running_var",
        "reference_encoder.conv_lateral_00.weight": "ref_encoder.lateral.1.weight",
        "reference_encoder.conv_dealias_3.bias": "ref_encoder.smooth.4.bias",
        "reference_encoder.conv_out.1.bias": "ref_encoder.out_conv.bias",
        "lstm_predictor.convlstm0.Gates.weight": "motion.lstm.gates.weight",
        "lstm_predictor.fusion_layer0.2.weight": "motion.fuse2.weight",
        "predictor.weight": "motion.regress.weight",
        "uncertainty_predictor.conv_bottom_3.model.6.bias": "visibility.stages.3.down.bias",
        "uncertainty_predictor.linear.weight": "visibility.linear.weight",
    }
    for theirs, mine in pairs.items():
        torch.testing.assert_close(ours[mine], official[theirs], msg=theirs)


def test_mapped_stem_computes_the_published_block(official) -> None:
    """Conv -> BatchNorm(eval) -> LeakyReLU(0.1) with the official tensors, by hand."""
    model = EventNet()
    model.load_state_dict(map_event_state_dict(official), strict=True)
    model.eval()
    x = torch.rand(2, 10, 62, 62, generator=torch.Generator().manual_seed(1))
    p = "target_encoder.conv_bottom_0.model"
    y = x
    for j in (0, 3):
        y = F.conv2d(y, official[f"{p}.{j}.weight"])
        y = F.batch_norm(y, official[f"{p}.{j + 1}.running_mean"],
                         official[f"{p}.{j + 1}.running_var"], official[f"{p}.{j + 1}.weight"],
                         official[f"{p}.{j + 1}.bias"], training=False, eps=1e-5)
        y = F.leaky_relu(y, 0.1)
    with torch.no_grad():
        torch.testing.assert_close(model.tgt_encoder.stages[0](x), y, rtol=1e-4, atol=1e-5)


def test_unknown_parameters_are_reported(official) -> None:
    extra = dict(official)
    extra["lstm_predictor.attention.weight"] = torch.zeros(3)
    with pytest.raises(CheckpointError, match="no place"):
        map_event_state_dict(extra)
    missing = {k: v for k, v in official.items() if not k.startswith("predictor.")}
    with pytest.raises(RuntimeError, match="Missing key"):
        EventNet().load_state_dict(map_event_state_dict(missing), strict=True)


class RunsCode:
    """Unpickling this with a plain pickle would call os.system."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        import os

        return os.system, (f"touch {self.marker}",)


def test_pickled_code_never_runs(official, tmp_path) -> None:
    """Only weights_only=True loads: a pickled call of os.system is refused with a clear error
    and never runs; other classes' objects become placeholders (test above)."""
    from blinktrack_ros.models.event_convert import read_lightning_state_dict

    src, marker = tmp_path / "evil.ckpt", tmp_path / "ran"
    torch.save({"state_dict": official, "hyper_parameters": RunsCode(str(marker))}, src)
    with pytest.raises(CheckpointError, match="not a readable checkpoint"):
        read_lightning_state_dict(src)
    assert not marker.exists()


def test_not_a_checkpoint(tmp_path) -> None:
    src = tmp_path / "x.ckpt"
    torch.save({"weights": {}}, src)
    with pytest.raises(CheckpointError, match="state_dict"):
        convert_event_checkpoint(src, tmp_path / "out.pt")


def test_convert_official_command(official, tmp_path, capsys) -> None:
    from blinktrack_ros.cli import main

    src, out = tmp_path / "official.ckpt", tmp_path / "out.pt"
    torch.save({"state_dict": official}, src)
    assert main(["convert-official", "--event", str(src), "--out", str(out)]) == 0
    assert "wrote" in capsys.readouterr().out
    torch.testing.assert_close(load_event_net(out).state_dict()["motion.regress.weight"],
                               official["predictor.weight"])


def test_mapped_recurrent_part_follows_the_published_equations(official) -> None:
    """ConvLSTM gate order (in, remember, out, cell) and the gated memory, by hand."""
    model = EventNet()
    model.load_state_dict(map_event_state_dict(official), strict=True)
    model.eval()
    g = torch.Generator().manual_seed(2)
    x, h, c = (torch.randn(2, 128, 7, 7, generator=g) for _ in range(3))
    w, b = official["lstm_predictor.convlstm0.Gates.weight"], official[
        "lstm_predictor.convlstm0.Gates.bias"]
    i, f, o, cell = F.conv2d(torch.cat([x, h], 1), w, b, padding=1).chunk(4, 1)
    c_ref = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(cell)
    h_ref = torch.sigmoid(o) * torch.tanh(c_ref)
    with torch.no_grad():
        h_new, c_new = model.motion.lstm(x, h, c)
    torch.testing.assert_close(c_new, c_ref, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(h_new, h_ref, rtol=1e-4, atol=1e-5)

    # fully connected part: fusion of [x, prev], gate on [prev, fused], output, regressor
    captured = {}
    model.motion.block4.register_forward_hook(lambda m, a, out: captured.update(x=out))
    joint = torch.randn(2, 514, 31, 31, generator=g)
    mem = torch.randn(2, 256, generator=g)
    with torch.no_grad():
        disp, _, _, mem_new = model.motion(joint, h, c, mem)
    emb = captured["x"].flatten(1)

    def lin(name: str, v: torch.Tensor) -> torch.Tensor:
        p = f"lstm_predictor.{name}"
        return F.linear(v, official[f"{p}.weight"], official.get(f"{p}.bias"))

    y = F.leaky_relu(lin("fusion_layer0.0", torch.cat([emb, mem], 1)), 0.1)
    y = F.leaky_relu(lin("fusion_layer0.2", y), 0.1)
    gate = torch.sigmoid(lin("gates", torch.cat([mem, y], 1)))
    mem_ref = mem * gate + y * (1 - gate)
    disp_ref = F.linear(F.leaky_relu(lin("output_layers.0", mem_ref), 0.1),
                        official["predictor.weight"])
    torch.testing.assert_close(mem_new, mem_ref, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(disp, disp_ref, rtol=1e-4, atol=1e-5)
