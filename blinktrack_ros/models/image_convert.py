"""Map the authors' image module weights (BlinkTrack `BlinkTrack_Image`, .pth) onto `paper`.

Parameter names of the published model (facts, used only as a renaming table):
- encoder `rgb_fnet.`: `conv1` (7x7 stem), `layer{1..4}.{0,1}.conv{1,2}`, and for strided first
  blocks `layer{2,3,4}.0.downsample.0` (1x1); `conv2` (3x3 fuse), `conv3` (1x1 head). Its
  instance norms have no parameters.
- per-point MLP `rgb_delta_block.to_delta.`: `0` (input linear), `{k}.0.norm`, `{k}.0.fn.0`,
  `{k}.0.fn.3` for blocks k = 1..12, `13` (final layer norm), `15` (output linear, 4 outputs).
Files may hold the state_dict itself or wrap it ('state_dict', 'model'), and keys may carry
`module.` prefixes (DataParallel).
"""

from __future__ import annotations

from pathlib import Path
import re

import torch

from blinktrack_ros.models.checkpoint import CheckpointError, save_checkpoint
from blinktrack_ros.models.image_config import PAPER, ImageNetConfig
from blinktrack_ros.models.image_net import KIND, ImageNet

_ENCODER_RULES = (
    (r"conv1\.(weight|bias)", "encoder.stem.{0}"),
    (r"layer(\d)\.(\d+)\.(conv1|conv2)\.(weight|bias)", "encoder.stages.{L}.{1}.{2}.{3}"),
    (r"layer(\d)\.(\d+)\.downsample\.0\.(weight|bias)", "encoder.stages.{L}.{1}.skip.{2}"),
    (r"conv2\.(weight|bias)", "encoder.fuse.{0}"),
    (r"conv3\.(weight|bias)", "encoder.head.{0}"),
)
_BLOCK_PARTS = {"norm": "norm", "fn.0": "fc1", "fn.3": "fc2"}


def official_key_to_ours(key: str, depth: int = PAPER.mlp_depth) -> str | None:
    """Our parameter name for one official name (prefixes stripped); None when unknown."""
    if key.startswith("rgb_fnet."):
        rest = key[len("rgb_fnet."):]
        for pattern, target in _ENCODER_RULES:
            m = re.fullmatch(pattern, rest)
            if m:
                groups = m.groups()
                stage = str(int(groups[0]) - 1) if "{L}" in target else ""
                return target.format(*groups, L=stage)
        return None
    m = re.fullmatch(r"rgb_delta_block\.to_delta\.(\d+)\.(.+)", key)
    if m is None:
        return None
    index, rest = int(m.group(1)), m.group(2)
    if index == 0:
        return f"mlp.inp.{rest}" if rest in ("weight", "bias") else None
    if index == depth + 1:
        return f"mlp.norm.{rest}" if rest in ("weight", "bias") else None
    if index == depth + 3:
        return f"mlp.out.{rest}" if rest in ("weight", "bias") else None
    if 1 <= index <= depth:
        part = re.fullmatch(r"0\.(norm|fn\.0|fn\.3)\.(weight|bias)", rest)
        if part:
            return f"mlp.blocks.{index - 1}.{_BLOCK_PARTS[part.group(1)]}.{part.group(2)}"
    return None


def unwrap_state_dict(payload: object) -> dict[str, torch.Tensor]:
    """The tensor dict inside a loaded .pth: unwrap 'state_dict'/'model', strip 'module.'."""
    while isinstance(payload, dict) and not any(torch.is_tensor(v) for v in payload.values()):
        inner = next((payload[k] for k in ("state_dict", "model", "net") if k in payload), None)
        if inner is None:
            break
        payload = inner
    if not isinstance(payload, dict) or not payload:
        raise CheckpointError("no state_dict found (expected a dict of tensors)")
    out = {}
    for key, value in payload.items():
        name = str(key)
        while name.startswith("module."):
            name = name[len("module."):]
        if torch.is_tensor(value):
            out[name] = value
    return out


def convert_state_dict(official: dict[str, torch.Tensor],
                       config: ImageNetConfig = PAPER) -> dict[str, torch.Tensor]:
    """Rename official tensors to ours and check that every name and shape fits `config`.

    Raises CheckpointError listing unknown, missing and mis-shaped parameters.
    """
    with torch.device("meta"):  # names and shapes only, no initialisation cost
        expected = ImageNet(config).state_dict()
    converted, unknown = {}, []
    for key, value in official.items():
        ours = official_key_to_ours(key, config.mlp_depth)
        if ours is None or ours not in expected:
            unknown.append(key)
        else:
            converted[ours] = value.detach().to(torch.float32).clone()
    missing = sorted(set(expected) - set(converted))
    bad_shape = [f"{k}: {tuple(v.shape)} != {tuple(expected[k].shape)}"
                 for k, v in converted.items() if v.shape != expected[k].shape]
    if unknown or missing or bad_shape:
        raise CheckpointError(f"official image weights do not fit the paper network: unknown "
                              f"{unknown[:8]}, missing {missing[:8]}, shapes {bad_shape[:8]}")
    return converted


def convert_image_checkpoint(src: Path, out: Path) -> None:
    """Read the authors' image weights `src` (.pth) and write our checkpoint `out` (paper)."""
    try:
        payload = torch.load(str(src), map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any unpickling failure means a bad input file
        raise CheckpointError(f"{src}: not a readable .pth file ({exc})") from exc
    state = convert_state_dict(unwrap_state_dict(payload), PAPER)  # names and shapes checked
    save_checkpoint(out, KIND, PAPER, state,
                    extra={"converted_from": Path(src).name,
                           "origin": "ColieShen/BlinkTrack BlinkTrack_Image"})
