"""ROS parameters from the config dataclasses: specs, the parameters file, real rclpy nodes."""

from __future__ import annotations

import dataclasses
from pathlib import Path
import typing

import pytest

from blinktrack_ros.nodes import params
from blinktrack_ros.nodes.config import (
    DYNAMIC_SECTIONS,
    SKIP_FIELDS,
    NodeConfig,
    default_sections,
)
from blinktrack_ros.tracking.fusion_types import FusionConfig, FusionMode

YAML = Path(__file__).resolve().parent.parent / "config" / "blinktrack.yaml"


def test_parameters_file_is_current() -> None:
    """config/blinktrack.yaml is exactly what the generator writes from the dataclasses."""
    assert params.main(["--check", str(YAML)]) == 0, "regenerate config/blinktrack.yaml"
    table = YAML.parent.parent / "docs" / "parameters.md"
    assert params.main(["--markdown", "--check", str(table)]) == 0, "regenerate the docs table"


def test_every_field_is_a_documented_parameter() -> None:
    """One spec per dataclass field (tuples excepted), each with a docstring description."""
    specs = params.param_specs(dynamic=DYNAMIC_SECTIONS)
    names = [s.name for s in specs]
    assert len(names) == len(set(names))
    for section, cfg in default_sections().items():
        docs = params.attribute_docs(type(cfg))
        hints = typing.get_type_hints(type(cfg))
        for f in dataclasses.fields(cfg):
            if "tuple" in str(hints[f.name]) or f"{section}.{f.name}" in SKIP_FIELDS:
                assert f"{section}.{f.name}" not in names
                continue
            assert f"{section}.{f.name}" in names
            assert docs.get(f.name), f"{type(cfg).__name__}.{f.name} has no docstring entry"
    for s in specs:
        if s.value_range is not None and s.kind in (int, float) and s.default != 0:
            assert s.value_range[0] <= s.default <= s.value_range[1], s.name


def test_defaults_roundtrip_through_parameter_values() -> None:
    """Rebuilding each section from its parameter defaults gives the dataclass defaults."""
    specs = params.param_specs()
    for section, cfg in default_sections().items():
        values = {s.field: s.default for s in specs if s.section == section}
        assert params.build_config(cfg, values, section) == cfg


def test_invalid_values_rejected_with_reason() -> None:
    """The dataclass's own checks and the enum choices give the reason."""
    with pytest.raises(ValueError, match="lost_after_s"):
        params.build_config(FusionConfig(), {"lost_after_s": 0.0}, "fusion")
    with pytest.raises(ValueError, match="kf, naive, single_source"):
        params.build_config(FusionConfig(), {"mode": "bogus"}, "fusion")
    with pytest.raises(ValueError, match="input_reliability"):
        params.build_config(NodeConfig(), {"input_reliability": "sometimes"}, "node")
    cfg = params.build_config(FusionConfig(), {"gate_threshold": 0.0, "mode": "naive"}, "fusion")
    assert cfg.gate_threshold is None and cfg.mode is FusionMode.NAIVE


# --- with real rclpy nodes ------------------------------------------------------------------


@pytest.fixture
def ros_context():
    """A fresh rclpy context (own domain, localhost), shut down after the test."""
    rclpy = pytest.importorskip("rclpy", reason="rclpy missing: bash tools/build_msgs.sh .venv")
    ctx = rclpy.Context()
    rclpy.init(context=ctx, args=["--ros-args", "--params-file", str(YAML)])
    yield ctx
    rclpy.shutdown(context=ctx)


def _node(ctx, overrides=()):
    import rclpy
    from rclpy.parameter import Parameter

    from blinktrack_ros.nodes.declare import NodeParameters

    node = rclpy.create_node("params_test", context=ctx, parameter_overrides=[
        Parameter(name, value=value) for name, value in overrides])
    changes: list = []
    declared = NodeParameters(node, default_sections(), DYNAMIC_SECTIONS,
                              on_change=lambda s, c: changes.append((s, c)))
    return node, declared, changes


@pytest.mark.ros
def test_node_declares_from_params_file_and_overrides(ros_context) -> None:
    """The real rcl YAML parser reads config/blinktrack.yaml; overrides reach the configs."""
    node, declared, _ = _node(ros_context, [("fusion.q", 7.5), ("fusion.mode", "naive"),
                                            ("seeding.target_count", 64)])
    assert declared.configs["fusion"] == FusionConfig(q=7.5, mode=FusionMode.NAIVE)
    assert declared.configs["seeding"].target_count == 64
    assert declared.configs["event_source"] == default_sections()["event_source"]
    desc = node.describe_parameter("fusion.lost_after_s")
    assert "LOST" in desc.description and desc.floating_point_range[0].from_value == 0.001
    assert node.describe_parameter("node.input_queue_depth").read_only
    node.destroy_node()


@pytest.mark.ros
def test_runtime_changes_validated(ros_context) -> None:
    """Out of range, dataclass-invalid and read-only changes are refused with a reason."""
    from rclpy.parameter import Parameter

    node, declared, changes = _node(ros_context)
    refused = {
        "fusion.q": -1.0,  # below the descriptor's range
        "fusion.visibility_ema_alpha": 0.0,  # in range, but FusionConfig needs > 0
        "fusion.mode": "bogus",
        "node.input_queue_depth": 5,  # read-only
    }
    for name, value in refused.items():
        result = node.set_parameters([Parameter(name, value=value)])[0]
        assert not result.successful and result.reason, name
    assert changes == [] and declared.configs["fusion"] == FusionConfig()
    result = node.set_parameters([Parameter("fusion.lost_after_s", value=2.0)])[0]
    assert result.successful
    assert changes == [("fusion", FusionConfig(lost_after_s=2.0))]
    node.destroy_node()


@pytest.mark.ros
def test_invalid_startup_values_raise(ros_context) -> None:
    """Start-up overrides out of range or rejected by the dataclass stop the node's creation."""
    from rclpy.exceptions import InvalidParameterValueException

    with pytest.raises(InvalidParameterValueException):
        _node(ros_context, [("seeding.target_count", 100000)])
    with pytest.raises(ValueError, match="visibility_ema_alpha"):
        _node(ros_context, [("fusion.visibility_ema_alpha", 0.0)])
