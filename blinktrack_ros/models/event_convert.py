"""The authors' event-module checkpoint (Lightning .ckpt) -> our `paper` EventNet checkpoint.

Parameter names follow the published model code (BlinkTrack `model/blinktrack_event.py` and
`model/common.py`): a conv block `X.model.<j>` holds, for its i-th conv, the conv at j = 3i and
its BatchNorm at j = 3i + 1 (j = 3i + 2 is the activation); a downsampling block adds a 2x2
stride-2 conv at j = 3n. The mapping below only renames; shapes are checked by a strict load.
"""

from __future__ import annotations

from pathlib import Path
import pickle
import re

import torch

from blinktrack_ros.models.checkpoint import CheckpointError
from blinktrack_ros.models.event_config import EventNetConfig
from blinktrack_ros.models.event_net import EventNet, save_event_net

_ENC_STAGES = ("conv_bottom_0", "conv_bottom_00", "conv_bottom_1", "conv_bottom_2",
               "conv_bottom_3", "conv_bottom_4")
_FPN_LEVELS = ("0", "00", "1", "2", "3")  # lateral/dealias suffixes for our levels 0..4
# keys of training-only modules that hold no weights of the network
_IGNORED_PREFIXES = ("loss.", "uncert_loss.", "loss_reproj.", "l2.", "kalman_filter.",
                     "uncert2R.")


def _block_rules(cfg: EventNetConfig) -> list[tuple[str, str, int | None]]:
    """(their prefix, our prefix, n_convs of a conv block or None for a plain layer)."""
    rules: list[tuple[str, str, int | None]] = []
    for theirs, ours in (("reference_encoder", "ref_encoder"), ("target_encoder", "tgt_encoder")):
        for i, name in enumerate(_ENC_STAGES):
            rules.append((f"{theirs}.{name}.", f"{ours}.stages.{i}.", cfg.enc_convs[i]))
        for i, level in enumerate(_FPN_LEVELS):
            rules.append((f"{theirs}.conv_lateral_{level}.", f"{ours}.lateral.{i}.", None))
            rules.append((f"{theirs}.conv_dealias_{level}.", f"{ours}.smooth.{i}.", None))
        rules.append((f"{theirs}.conv_out.0.", f"{ours}.out_block.", 1))
        rules.append((f"{theirs}.conv_out.1.", f"{ours}.out_conv.", None))
    rules += [("reference_redir.", "ref_redir.", None), ("target_redir.", "tgt_redir.", None)]
    lp, hc = "lstm_predictor.", cfg.head_convs
    rules += [(f"{lp}conv1.", "motion.block1.", hc), (f"{lp}conv2.", "motion.block2.", hc),
              (f"{lp}conv3.", "motion.block3.", hc), (f"{lp}conv4.", "motion.block4.", 1),
              (f"{lp}convlstm0.Gates.", "motion.lstm.gates.", None),
              (f"{lp}gates.", "motion.gate.", None),
              (f"{lp}fusion_layer0.0.", "motion.fuse1.", None),
              (f"{lp}fusion_layer0.2.", "motion.fuse2.", None),
              (f"{lp}output_layers.0.", "motion.out.", None),
              ("predictor.", "motion.regress.", None)]
    for i in range(5):
        rules.append((f"uncertainty_predictor.conv_bottom_{i}.", f"visibility.stages.{i}.", hc))
    rules.append(("uncertainty_predictor.linear.", "visibility.linear.", None))
    return rules


def _map_block_suffix(suffix: str, n_convs: int) -> str | None:
    """`model.<j>.<param>` of a conv block -> our ConvStage suffix, None if not a weight."""
    match = re.fullmatch(r"model\.(\d+)\.(.+)", suffix)
    if match is None:
        return None
    j, param = int(match.group(1)), match.group(2)
    if j == 3 * n_convs:
        return f"down.{param}"
    if j < 3 * n_convs and j % 3 in (0, 1):
        return f"convs.{j // 3}.{'conv' if j % 3 == 0 else 'bn'}.{param}"
    return None


def map_event_state_dict(theirs: dict[str, torch.Tensor],
                         cfg: EventNetConfig | None = None) -> dict[str, torch.Tensor]:
    """Rename the authors' event-module parameters to our EventNet names.

    Raises CheckpointError listing keys that match no rule (ignoring training-only modules).
    """
    cfg = cfg or EventNetConfig.paper()
    rules = _block_rules(cfg)
    ours: dict[str, torch.Tensor] = {}
    unknown = []
    for key, value in theirs.items():
        key = key[len("model."):] if key.startswith("model.") else key
        rule = next((r for r in rules if key.startswith(r[0])), None)
        if rule is None:
            if not key.startswith(_IGNORED_PREFIXES):
                unknown.append(key)
            continue
        suffix = key[len(rule[0]):]
        mapped = suffix if rule[2] is None else _map_block_suffix(suffix, rule[2])
        if mapped is None:
            unknown.append(key)
            continue
        ours[rule[1] + mapped] = value
    if unknown:
        raise CheckpointError(f"{len(unknown)} parameters of the official checkpoint have no "
                              f"place in the paper EventNet, e.g. {unknown[:5]}")
    return ours


class _Placeholder:
    """Stands in for any non-tensor object of a checkpoint (hyper-parameters, configs): it is
    built, called or given a state without running anything from the file."""

    def __init__(self, *args: object, **kwargs: object) -> None:
        pass

    def __setstate__(self, state: object) -> None:
        pass


def _load_with_placeholders(src: Path) -> object:
    """torch.load(weights_only=True) with every global the file names that torch's safe
    unpickler does not know allow-listed as a _Placeholder under that name."""
    ser = torch.serialization
    if not hasattr(ser, "get_unsafe_globals_in_checkpoint"):  # torch < 2.5
        raise CheckpointError(f"{src}: pickles non-tensor objects (hyper-parameters); reading "
                              "it without running its code needs torch >= 2.5: upgrade torch")
    names = ser.get_unsafe_globals_in_checkpoint(str(src))
    stand_ins = [(type("_Placeholder", (_Placeholder,), {}), name) for name in names]
    with ser.safe_globals(stand_ins):
        return torch.load(str(src), map_location="cpu", weights_only=True)


def read_lightning_state_dict(src: Path) -> dict[str, torch.Tensor]:
    """The `state_dict` of a Lightning checkpoint, without executing pickled code: always
    `weights_only=True`; hyper-parameters of other classes (hydra/omegaconf) become
    placeholders, never imported."""
    try:
        try:
            payload = torch.load(str(src), map_location="cpu", weights_only=True)
        except pickle.UnpicklingError:
            payload = _load_with_placeholders(src)
    except CheckpointError:
        raise
    except Exception as exc:  # noqa: BLE001 - any other failure: not a checkpoint
        raise CheckpointError(f"{src}: not a readable checkpoint ({exc})") from exc
    state = payload.get("state_dict") if isinstance(payload, dict) else None
    if not isinstance(state, dict):
        raise CheckpointError(f"{src}: no 'state_dict' entry; is this the official event .ckpt?")
    return {k: v for k, v in state.items() if isinstance(v, torch.Tensor)}


def convert_event_checkpoint(src: Path, out: Path) -> None:
    """Convert the official event-module checkpoint `src` into our checkpoint file `out`."""
    cfg = EventNetConfig.paper()
    mapped = map_event_state_dict(read_lightning_state_dict(Path(src)), cfg)
    model = EventNet(cfg)
    try:
        model.load_state_dict(mapped, strict=True)
    except RuntimeError as exc:
        raise CheckpointError(f"{src}: official weights do not fit the paper EventNet: "
                              f"{exc}") from exc
    save_event_net(out, model, extra={"converted_from": str(src)})
