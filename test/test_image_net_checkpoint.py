"""Image network checkpoints and the conversion of the authors' published weights."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from blinktrack_ros.cli import main as cli_main
from blinktrack_ros.models.checkpoint import CheckpointError, save_checkpoint
from blinktrack_ros.models.image_config import LITE, PAPER
from blinktrack_ros.models.image_convert import convert_image_checkpoint
from blinktrack_ros.models.image_net import (
    ImageNet,
    count_parameters,
    load_image_net,
    save_image_net,
)


def official_state_dict(seed: int = 0) -> dict[str, torch.Tensor]:
    """Random tensors under the published parameter names and shapes of BlinkTrack_Image."""
    g = torch.Generator().manual_seed(seed)
    sd: dict[str, torch.Tensor] = {}

    def conv(name: str, cin: int, cout: int, k: int) -> None:
        sd[f"{name}.weight"] = torch.randn(cout, cin, k, k, generator=g)
        sd[f"{name}.bias"] = torch.randn(cout, generator=g)

    def linear(name: str, cin: int, cout: int) -> None:
        sd[f"{name}.weight"] = torch.randn(cout, cin, generator=g)
        sd[f"{name}.bias"] = torch.randn(cout, generator=g)

    def layer_norm(name: str, dim: int) -> None:
        sd[f"{name}.weight"] = torch.randn(dim, generator=g)
        sd[f"{name}.bias"] = torch.randn(dim, generator=g)

    conv("rgb_fnet.conv1", 1, 64, 7)
    in_planes = 64
    for layer, dim in zip((1, 2, 3, 4), (64, 96, 128, 128)):
        conv(f"rgb_fnet.layer{layer}.0.conv1", in_planes, dim, 3)
        conv(f"rgb_fnet.layer{layer}.0.conv2", dim, dim, 3)
        if layer > 1:
            conv(f"rgb_fnet.layer{layer}.0.downsample.0", in_planes, dim, 1)
        conv(f"rgb_fnet.layer{layer}.1.conv1", dim, dim, 3)
        conv(f"rgb_fnet.layer{layer}.1.conv2", dim, dim, 3)
        in_planes = dim
    conv("rgb_fnet.conv2", 64 + 96 + 128 + 128, 256, 3)
    conv("rgb_fnet.conv3", 256, 128, 1)
    kitchen = 4 * 7 * 7 + 2 * 128 + 2 * 64 + 2  # corr + ref/target features + embedding = 582
    linear("rgb_delta_block.to_delta.0", kitchen, 512)
    for k in range(1, 13):
        layer_norm(f"rgb_delta_block.to_delta.{k}.0.norm", 512)
        linear(f"rgb_delta_block.to_delta.{k}.0.fn.0", 512, 2048)
        linear(f"rgb_delta_block.to_delta.{k}.0.fn.3", 2048, 512)
    layer_norm("rgb_delta_block.to_delta.13", 512)
    linear("rgb_delta_block.to_delta.15", 512, 4)
    return sd


@pytest.fixture(scope="module")
def official(tmp_path_factory) -> tuple[dict[str, torch.Tensor], Path, ImageNet]:
    sd = official_state_dict()
    src = tmp_path_factory.mktemp("official") / "blinktrack_image.pth"
    torch.save({"state_dict": {f"module.{k}": v for k, v in sd.items()}}, src)
    out = src.with_name("converted.pt")
    convert_image_checkpoint(src, out)
    return sd, src, load_image_net(out, expected_config=PAPER)


def test_converter_maps_every_published_tensor(official):
    sd, _, net = official
    assert sum(v.numel() for v in sd.values()) == count_parameters(net)
    pairs = {
        "rgb_fnet.conv1.weight": net.encoder.stem.weight,
        "rgb_fnet.layer1.1.conv2.bias": net.encoder.stages[0][1].conv2.bias,
        "rgb_fnet.layer2.0.downsample.0.weight": net.encoder.stages[1][0].skip.weight,
        "rgb_fnet.layer4.0.conv1.weight": net.encoder.stages[3][0].conv1.weight,
        "rgb_fnet.conv2.weight": net.encoder.fuse.weight,
        "rgb_fnet.conv3.bias": net.encoder.head.bias,
        "rgb_delta_block.to_delta.0.weight": net.mlp.inp.weight,
        "rgb_delta_block.to_delta.1.0.norm.weight": net.mlp.blocks[0].norm.weight,
        "rgb_delta_block.to_delta.12.0.fn.0.bias": net.mlp.blocks[11].fc1.bias,
        "rgb_delta_block.to_delta.7.0.fn.3.weight": net.mlp.blocks[6].fc2.weight,
        "rgb_delta_block.to_delta.13.bias": net.mlp.norm.bias,
        "rgb_delta_block.to_delta.15.weight": net.mlp.out.weight,
    }
    for name, param in pairs.items():
        assert torch.equal(sd[name], param.detach()), name


def test_converted_network_runs(official, rng):
    _, _, net = official
    with torch.no_grad():
        frame = net.encode_frame(torch.from_numpy(rng.random((64, 64), dtype=np.float32)))
        pos, logits = net.track(frame, net.sample_reference(frame, torch.tensor([[30.0, 30.0]])),
                                torch.tensor([[31.0, 29.0]]))
    assert pos.shape == (1, 2) and logits.shape == (1, 2)


def test_converter_rejects_unknown_missing_and_misshaped(official, tmp_path):
    good = official[0]
    cases = {
        "unknown": {**good, "rgb_fnet.layer5.0.conv1.weight": torch.zeros(1)},
        "missing": {k: v for k, v in good.items() if k != "rgb_fnet.conv3.bias"},
        "shapes": {**good, "rgb_delta_block.to_delta.15.weight": torch.zeros(2, 512)},
    }
    for word, sd in cases.items():
        src = tmp_path / f"{word}.pth"
        torch.save(sd, src)
        with pytest.raises(CheckpointError, match=word):
            convert_image_checkpoint(src, tmp_path / "out.pt")
    garbage = tmp_path / "garbage.pth"
    garbage.write_bytes(b"not a torch file")
    with pytest.raises(CheckpointError, match="not a readable"):
        convert_image_checkpoint(garbage, tmp_path / "out.pt")


def test_convert_official_command(official, tmp_path):
    _, src, _ = official
    out = tmp_path / "cli.pt"
    assert cli_main(["convert-official", "--image", str(src), "--out", str(out)]) == 0
    assert load_image_net(out).config == PAPER


def test_checkpoint_round_trip_and_mismatch(tmp_path, rng):
    torch.manual_seed(0)
    net = ImageNet(LITE).eval()
    path = tmp_path / "lite.pt"
    save_image_net(path, net, extra={"note": "test"})
    loaded = load_image_net(path, expected_config=LITE)
    gray = torch.from_numpy(rng.random((60, 80), dtype=np.float32))
    starts = torch.tensor([[10.0, 20.0], [70.0, 50.0]])
    with torch.no_grad():
        outs = []
        for model in (net, loaded):
            frame = model.encode_frame(gray)
            outs.append(model.track(frame, model.sample_reference(frame, starts), starts + 1))
    for a, b in zip(*outs):
        assert torch.equal(a, b)
    with pytest.raises(CheckpointError, match="config does not match"):
        load_image_net(path, expected_config=PAPER)
    other = tmp_path / "event.pt"
    save_checkpoint(other, "event_net", LITE, net.state_dict())
    with pytest.raises(CheckpointError, match="expected 'image_net'"):
        load_image_net(other)
    wrong = tmp_path / "wrong.pt"
    save_checkpoint(wrong, "image_net", PAPER, net.state_dict())
    with pytest.raises(CheckpointError, match="do not fit"):
        load_image_net(wrong)


def test_bench_command_reports_json(capsys):
    import json

    import torch

    before = torch.get_num_threads()
    threads = 2 if before == 1 else 1
    assert cli_main(["bench", "image-net", "--configs", "lite", "--repeats", "1", "--tracks",
                     "8", "--threads", str(threads), "--json"]) == 0
    figures = json.loads(capsys.readouterr().out)
    assert figures["bench"] == "image-net" and figures["tracks"] == 8
    assert figures["machine"]["torch_threads"] == threads  # timed with the threads asked for
    assert torch.get_num_threads() == before  # and the caller's setting is restored
    for size in ("240x180", "640x480"):
        assert figures[f"lite_{size}_frame_ms"] > 0
        # the lite network must cost far less than the authors' 17 / 61 GFLOP per frame
        assert 0 < figures[f"lite_{size}_frame_GFLOP"] < 5
    assert figures["lite_640x480_frame_GFLOP"] > figures["lite_240x180_frame_GFLOP"]


def _features_of(net: ImageNet, x: torch.Tensor):
    """FrameFeatures of a (H, W) frame whose encoder input is exactly x (no padding by us)."""
    import torch.nn.functional as F

    from blinktrack_ros.models.image_net import FrameFeatures

    levels = [net.encoder(x[None, None])[0]]
    for _ in range(net.config.corr_levels - 1):
        levels.append(F.avg_pool2d(levels[-1][None], 2, stride=2)[0])
    size = (int(x.shape[0]), int(x.shape[1]))
    return FrameFeatures(tuple(levels), size, size)


@pytest.mark.parametrize("size", [(180, 240), (260, 346)])  # EC/EDS DAVIS240C, DAVIS346
def test_converted_weights_encode_frames_unpadded(official, rng, size):
    """The authors feed frames as given; a converted checkpoint must too (issue: 0.2-0.8 px off).

    Reference: the encoder run directly on the unpadded frame, and the coordinates tracked on
    those features; the default path must give the same, and must differ from a padded encoding
    (so the test would fail if the padding came back).
    """
    _, _, net = official
    assert net.config.frame_padding == "none"
    H, W = size
    gray = torch.from_numpy(rng.random((H, W), dtype=np.float32))
    starts = torch.tensor([[12.0, 15.0], [W - 9.5, H - 7.25], [W / 2 + 0.3, H / 2 - 0.6]])
    with torch.no_grad():
        frame = net.encode_frame(gray)
        direct = _features_of(net, gray)
        assert frame.padded_size == (H, W)
        assert frame.feature_map.shape[-2:] == (H // 8, W // 8)
        np.testing.assert_allclose(frame.feature_map.numpy(), direct.feature_map.numpy(),
                                   rtol=0, atol=1e-5)
        ref = net.sample_reference(direct, starts)
        got, _ = net.track(frame, ref, starts + 1.5, starts)
        want, _ = net.track(direct, ref, starts + 1.5, starts)
        np.testing.assert_allclose(got.numpy(), want.numpy(), rtol=0, atol=1e-3)
        padded = _pad_to_8(gray)
        if padded.shape != gray.shape:  # both sizes here are not multiples of 8
            other = _features_of(net, padded).feature_map[:, : H // 8, : W // 8]
            assert float((other - direct.feature_map).abs().max()) > 1e-3


def _pad_to_8(gray: torch.Tensor) -> torch.Tensor:
    H, W = gray.shape
    return torch.nn.functional.pad(gray[None, None], (0, -W % 8, 0, -H % 8),
                                   mode="replicate")[0, 0]


def test_padding_convention_is_carried_by_the_checkpoint(official, tmp_path, rng):
    """Lite weights keep padding; converted weights from before the field existed load unpadded."""
    import dataclasses

    lite = load_image_net(Path(__file__).parents[1] / "weights" / "image_lite.pt")
    assert lite.config.frame_padding == "replicate"  # trained on padded frames: unchanged
    with torch.no_grad():
        frame = lite.encode_frame(torch.from_numpy(rng.random((180, 240), dtype=np.float32)))
    assert frame.padded_size == (184, 240)
    _, _, net = official
    legacy = {f.name: getattr(PAPER, f.name) for f in dataclasses.fields(PAPER)
              if f.name != "frame_padding"}
    for extra, want in (({"converted_from": "BlinkTrack_Image.pth"}, "none"), ({}, "replicate")):
        path = tmp_path / f"legacy_{want}.pt"
        torch.save({"format_version": 1, "kind": "image_net", "config": legacy,
                    "state_dict": net.state_dict(), "extra": extra}, path)
        assert load_image_net(path).config.frame_padding == want
    with pytest.raises(ValueError, match="frame_padding"):
        dataclasses.replace(PAPER, frame_padding="reflect")
    small = dataclasses.replace(PAPER, frame_padding="none")
    assert ImageNet(small).encode_frame(torch.zeros(40, 50)).padded_size == (128, 128)
