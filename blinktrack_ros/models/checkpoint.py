"""Checkpoint files: state_dict + config + format version, loaded without pickle code."""

from __future__ import annotations

from collections.abc import Callable
import dataclasses
from pathlib import Path
from typing import Any, TypeVar

import torch

FORMAT_VERSION = 1
C = TypeVar("C")


class CheckpointError(ValueError):
    """A checkpoint that cannot be used: wrong kind, format or config."""


def save_checkpoint(path: str | Path, kind: str, config: Any, state_dict: dict[str, torch.Tensor],
                    extra: dict[str, Any] | None = None) -> None:
    """Write {format_version, kind, config (a dataclass, stored as a dict), state_dict, extra}."""
    payload = {
        "format_version": FORMAT_VERSION,
        "kind": kind,
        "config": dataclasses.asdict(config),
        "state_dict": {k: v.detach().cpu() for k, v in state_dict.items()},
        "extra": dict(extra or {}),
    }
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    torch.save(payload, str(path))


def load_checkpoint(path: str | Path, kind: str, config_cls: type[C],
                    expected_config: C | None = None,
                    legacy_fields: Callable[[dict], dict] | None = None
                    ) -> tuple[C, dict[str, torch.Tensor], dict]:
    """Read a checkpoint written by save_checkpoint and check it.

    Returns (config, state_dict, extra). Raises CheckpointError naming what does not match:
    the kind, the format version, unknown config fields, or a config that differs from
    `expected_config` when one is given. `legacy_fields(extra)` gives values for config fields
    that a checkpoint written before they existed lacks (fields it does store are kept).
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    try:
        payload = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any unpickling failure is a bad file for the user
        raise CheckpointError(f"{path}: not a readable checkpoint ({exc})") from exc
    if not isinstance(payload, dict) or "state_dict" not in payload:
        raise CheckpointError(f"{path}: no state_dict; is this a blinktrack checkpoint? "
                              "Official weights need `blinktrack convert-official` first")
    if payload.get("format_version") != FORMAT_VERSION:
        raise CheckpointError(f"{path}: format version {payload.get('format_version')}, "
                              f"this code reads {FORMAT_VERSION}")
    if payload.get("kind") != kind:
        raise CheckpointError(f"{path}: holds a '{payload.get('kind')}' model, expected '{kind}'")
    fields = {f.name for f in dataclasses.fields(config_cls)}
    stored = dict(payload.get("config", {}))
    unknown = sorted(set(stored) - fields)
    if unknown:
        raise CheckpointError(f"{path}: config fields unknown to {config_cls.__name__}: {unknown}")
    if legacy_fields is not None:
        extra = dict(payload.get("extra", {}))
        stored = {**{k: v for k, v in legacy_fields(extra).items() if k in fields}, **stored}
    config = config_cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in stored.items()})
    if expected_config is not None and config != expected_config:
        diff = {f: (getattr(config, f), getattr(expected_config, f)) for f in sorted(fields)
                if getattr(config, f) != getattr(expected_config, f)}
        raise CheckpointError(f"{path}: config does not match (checkpoint, expected): {diff}")
    return config, payload["state_dict"], dict(payload.get("extra", {}))


NOISE_KEY = "fusion_noise"
NOISE_RANGE = {"log_r0": (-20.0, 20.0), "slope": (0.0, 100.0)}


def fusion_noise_of(extra: dict, path: str | Path = "checkpoint") -> tuple[float, float] | None:
    """The measurement noise fitted for these weights, (log_r0, slope), from a checkpoint's
    extra (`train.calibrate --write`), or None when it has none; CheckpointError when the
    stored values are malformed or outside the fusion parameters' ranges."""
    fit = extra.get(NOISE_KEY)
    if fit is None:
        return None
    try:
        values = tuple(float(fit[k]) for k in ("log_r0", "slope"))
    except (TypeError, KeyError, ValueError) as exc:
        raise CheckpointError(f"{path}: malformed {NOISE_KEY} {fit!r} ({exc})") from exc
    for (name, (lo, hi)), v in zip(NOISE_RANGE.items(), values):
        if not lo <= v <= hi:  # also rejects NaN
            raise CheckpointError(f"{path}: {NOISE_KEY}.{name} = {v} outside [{lo}, {hi}]")
    return values  # type: ignore[return-value]


def set_fusion_noise(path: str | Path, log_r0: float, slope: float,
                     note: str | None = None) -> None:
    """Store a fitted measurement noise in a checkpoint's extra (the file is rewritten)."""
    path = Path(path)
    payload = torch.load(str(path), map_location="cpu", weights_only=True)
    if not isinstance(payload, dict) or "state_dict" not in payload:
        raise CheckpointError(f"{path}: not a blinktrack checkpoint")
    extra = dict(payload.get("extra", {}))
    extra[NOISE_KEY] = {"log_r0": float(log_r0), "slope": float(slope),
                        **({"note": note} if note else {})}
    fusion_noise_of(extra, path)
    payload["extra"] = extra
    tmp = path.with_name(path.name + ".tmp")
    torch.save(payload, str(tmp))
    tmp.replace(path)
