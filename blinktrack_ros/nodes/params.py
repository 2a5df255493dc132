"""ROS parameters generated from the core's frozen config dataclasses.

Each field of each config section becomes one parameter `<section>.<field>`, declared once with
its dataclass default, the description from the class docstring's `Attributes:` entry, an
integer/floating point range (`RANGES`) and read_only unless the section may change at run time.
Values the dataclass rejects (its `__post_init__`) or enum values it does not know are refused
with the reason (on_set_parameters_callback); accepted changes rebuild the section's config and
are handed to the node's `on_change`. The same specs write `config/blinktrack.yaml` and the
parameter table in the docs (`python -m blinktrack_ros.nodes.params --help`), so the three
cannot drift apart. Nothing here needs rclpy except `NodeParameters`.
"""

from __future__ import annotations

import argparse
from collections.abc import Collection, Mapping
import dataclasses
from dataclasses import dataclass
import enum
import re
import sys
import textwrap
import types
import typing
from typing import Any

from blinktrack_ros.nodes.config import SKIP_FIELDS, NodeConfig, default_sections

PARAM_TYPES = (bool, int, float, str)
# Ranges (inclusive) of numeric fields; the dataclasses' own checks still apply on top.
RANGES: dict[str, tuple[float, float]] = {
    "fusion.q": (0.0, 1.0e9), "fusion.gate_threshold": (0.0, 1.0e6),
    "fusion.reorder_window_ms": (0.0, 1000.0), "fusion.occlusion_visibility": (0.0, 1.0),
    "fusion.confident_visibility": (0.0, 1.0), "fusion.visibility_ema_alpha": (0.0, 1.0),
    "fusion.lost_after_s": (0.001, 3600.0), "fusion.out_of_image_margin_px": (0.0, 10000.0),
    "fusion.seed_position_std_px": (0.001, 1000.0),
    "fusion.seed_velocity_std_px_s": (0.001, 1.0e5),
    "seeding.target_count": (0, 4096), "seeding.min_distance_px": (0.0, 1000.0),
    "seeding.quality_level": (0.0, 1.0), "seeding.block_size": (3, 63),
    "seeding.border_px": (0, 1000),
    "event_source.r_max": (0.0, 1.0e6), "event_source.thre": (0.0, 1.0),
    "image_source.r_max": (0.0, 1.0e6), "image_source.thre": (0.0, 1.0),
    "image_source.r_min": (0.0, 1.0e3),
    "pipeline.event_window_ms": (0.1, 1000.0), "pipeline.max_pending_windows": (1, 1000),
    "pipeline.time_reset_tolerance_ms": (0.0, 1.0e4),
}


@dataclass(frozen=True)
class ParamSpec:
    """One ROS parameter derived from a config field.

    Attributes:
        name: full parameter name, `<section>.<field>`.
        section, field: where the value goes.
        kind: the Python type of the parameter value (bool, int, float or str).
        default: the parameter value of the dataclass default.
        description: from the class docstring (plus choices, and "0 = off" for optionals).
        value_range: inclusive (low, high) for numbers, or None.
        choices: allowed strings (enums and NodeConfig choices), or None.
        read_only: True when the value can only be set at start-up.
    """

    name: str
    section: str
    field: str
    kind: type
    default: Any
    description: str
    value_range: tuple[float, float] | None
    choices: tuple[str, ...] | None
    read_only: bool


def attribute_docs(cls: type) -> dict[str, str]:
    """Field name -> description from a Google-style `Attributes:` docstring section."""
    docs: dict[str, str] = {}
    lines = (cls.__doc__ or "").splitlines()
    inside, names, indent = False, [], -1
    for line in lines:
        if line.strip() == "Attributes:":
            inside = True
            continue
        if not inside or not line.strip():
            continue
        depth = len(line) - len(line.lstrip())
        m = re.match(r"^\s*([A-Za-z_][\w, ]*):\s*(.*)$", line)
        if m and indent in (-1, depth):
            indent = depth
            names = [n.strip() for n in m.group(1).split(",")]
            docs.update({name: m.group(2).strip() for name in names})
        elif names and depth > indent:  # continuation line
            docs.update({name: f"{docs[name]} {line.strip()}" for name in names})
        else:
            break
    return docs


def _base_type(hint: Any) -> tuple[Any, bool]:
    """(the type without None, optional?) of a field's resolved annotation."""
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        return (args[0] if len(args) == 1 else hint), len(args) < len(typing.get_args(hint))
    return hint, False


def _enum_text(member: enum.Enum) -> str:
    return member.value if isinstance(member.value, str) else member.name.lower()


def to_param(value: Any, hint: Any) -> Any:
    """A config value as a parameter value (enums as text, None as 0)."""
    base, optional = _base_type(hint)
    if value is None and optional:
        return base(0)
    if isinstance(value, enum.Enum):
        return _enum_text(value)
    return base(value)


def from_param(value: Any, hint: Any, name: str) -> Any:
    """A parameter value as a config value; ValueError with the reason when it does not fit."""
    base, optional = _base_type(hint)
    if isinstance(base, type) and issubclass(base, enum.Enum):
        for member in base:
            if _enum_text(member) == value:
                return member
        raise ValueError(f"{name}: {value!r} is not one of "
                         f"{', '.join(_enum_text(m) for m in base)}")
    if optional and value == 0:
        return None
    return base(value)


def _field_spec(section: str, cfg: Any, f: dataclasses.Field, hint: Any, doc: str,
                dynamic: bool) -> ParamSpec | None:
    base, optional = _base_type(hint)
    choices = f.metadata.get("choices")
    if isinstance(base, type) and issubclass(base, enum.Enum):
        choices, kind = tuple(_enum_text(m) for m in base), str
    elif base in PARAM_TYPES:
        kind = base
    else:
        return None  # e.g. tuples: not a parameter (fusion.image_size comes from the images)
    name = f"{section}.{f.name}"
    text = doc or name
    if choices:
        text += f" One of: {', '.join(choices)}."
    if optional:
        text += " 0 = off."
    value_range = f.metadata.get("range", RANGES.get(name))
    read_only = not (dynamic or f.metadata.get("dynamic", False))
    return ParamSpec(name, section, f.name, kind, to_param(getattr(cfg, f.name), hint), text,
                     value_range, tuple(choices) if choices else None, read_only)


def param_specs(sections: Mapping[str, Any] | None = None,
                dynamic: Collection[str] = ()) -> list[ParamSpec]:
    """Specs of every parameter of `sections` (section name -> config instance).

    Args:
        sections: default `default_sections()`.
        dynamic: sections whose parameters may change while running (others are read_only,
            except NodeConfig fields marked dynamic).
    """
    sections = default_sections() if sections is None else sections
    specs = []
    for section, cfg in sections.items():
        hints = typing.get_type_hints(type(cfg))
        docs = attribute_docs(type(cfg))
        for f in dataclasses.fields(cfg):
            if f"{section}.{f.name}" in SKIP_FIELDS:
                continue
            spec = _field_spec(section, cfg, f, hints[f.name], docs.get(f.name, ""),
                               section in dynamic)
            if spec is not None:
                specs.append(spec)
    return specs


def build_config(cfg: Any, values: Mapping[str, Any], section: str) -> Any:
    """`cfg` with fields replaced from parameter values {field: value}; ValueError if invalid."""
    hints = typing.get_type_hints(type(cfg))
    changes = {k: from_param(v, hints[k], f"{section}.{k}") for k, v in values.items()}
    try:
        return dataclasses.replace(cfg, **changes)
    except (ValueError, TypeError) as exc:
        raise ValueError(f"{section}: {exc}") from None


def _yaml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    return repr(value)


def to_yaml(specs: list[ParamSpec]) -> str:
    """The parameters file: every parameter with its default, for every node (`/**`)."""
    out = ["# Parameters of every blinktrack_ros node, with their defaults.",
           "# Generated: python -m blinktrack_ros.nodes.params --write config/blinktrack.yaml",
           "# (test/test_ros_params.py checks it is current). Each node reads the sections it",
           "# uses; `ro` marks parameters that can only be set at start-up.",
           "/**:", "  ros__parameters:"]
    section = None
    for s in specs:
        if s.section != section:
            section = s.section
            out.append(f"    {section}:")
        rng = f" [{s.value_range[0]}, {s.value_range[1]}]" if s.value_range else ""
        ro = " (ro)" if s.read_only else ""
        out.extend(textwrap.wrap(f"{s.description}{rng}{ro}", 99, initial_indent="      # ",
                                 subsequent_indent="      #   "))
        out.append(f"      {s.field}: {_yaml_value(s.default)}")
    return "\n".join(out) + "\n"


def to_markdown(specs: list[ParamSpec]) -> str:
    """A Markdown table of the parameters (for the docs)."""
    rows = ["| parameter | type | default | range | runtime | description |",
            "|---|---|---|---|---|---|"]
    for s in specs:
        rng = f"{s.value_range[0]} – {s.value_range[1]}" if s.value_range else ""
        rows.append(f"| `{s.name}` | {s.kind.__name__} | `{_yaml_value(s.default)}` | {rng} | "
                    f"{'no' if s.read_only else 'yes'} | {s.description} |")
    return "\n".join(rows) + "\n"


def main(argv: list[str] | None = None) -> int:
    """`python -m blinktrack_ros.nodes.params`: print, write or check the parameters file."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--write", metavar="FILE", help="write the parameters file (or table)")
    ap.add_argument("--check", metavar="FILE", help="exit 1 if the file is not current")
    ap.add_argument("--markdown", action="store_true",
                    help="the Markdown table (docs/parameters.md) instead of the YAML file")
    args = ap.parse_args(argv)
    from blinktrack_ros.nodes.config import DYNAMIC_SECTIONS

    specs = param_specs(dynamic=DYNAMIC_SECTIONS)
    text = to_markdown(specs) if args.markdown else to_yaml(specs)
    if args.write:
        with open(args.write, "w") as f:
            f.write(text)
    elif args.check:
        with open(args.check) as f:
            if f.read() != text:
                flag = "--markdown " if args.markdown else ""
                print(f"{args.check} is out of date: run python -m blinktrack_ros.nodes.params "
                      f"{flag}--write {args.check}", file=sys.stderr)
                return 1
    else:
        sys.stdout.write(text)
    return 0


__all__ = ["NodeConfig", "ParamSpec", "attribute_docs", "build_config", "from_param",
           "param_specs", "to_markdown", "to_param", "to_yaml"]

if __name__ == "__main__":
    sys.exit(main())
