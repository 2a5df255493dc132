"""Declare config sections as ROS parameters on an rclpy node and keep the validated configs."""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping
from typing import Any

from rcl_interfaces.msg import (
    FloatingPointRange,
    IntegerRange,
    ParameterDescriptor,
    ParameterType,
    SetParametersResult,
)
from rclpy.node import Node
from rclpy.parameter import Parameter

from blinktrack_ros.nodes.params import ParamSpec, build_config, param_specs

_TYPES = {bool: ParameterType.PARAMETER_BOOL, int: ParameterType.PARAMETER_INTEGER,
          float: ParameterType.PARAMETER_DOUBLE, str: ParameterType.PARAMETER_STRING}


def descriptor(spec: ParamSpec) -> ParameterDescriptor:
    """The ParameterDescriptor of a spec: type, description, range, choices, read_only."""
    d = ParameterDescriptor(name=spec.name, type=_TYPES[spec.kind], description=spec.description,
                            read_only=spec.read_only)
    if spec.choices:
        d.additional_constraints = "one of: " + ", ".join(spec.choices)
    if spec.value_range is not None and spec.kind is float:
        d.floating_point_range = [FloatingPointRange(
            from_value=float(spec.value_range[0]), to_value=float(spec.value_range[1]), step=0.0)]
    elif spec.value_range is not None and spec.kind is int:
        d.integer_range = [IntegerRange(
            from_value=int(spec.value_range[0]), to_value=int(spec.value_range[1]), step=1)]
    return d


class NodeParameters:
    """The config sections of one node, declared as parameters and kept valid.

    Start-up values come from the parameter overrides (params file, launch, command line);
    an invalid one raises ValueError naming the parameter. Later changes of non-read-only
    parameters are validated by rebuilding the section's dataclass (refused with its reason)
    and then passed to `on_change(section, new_config)`.
    """

    def __init__(self, node: Node, sections: Mapping[str, Any],
                 dynamic: Collection[str] = (),
                 on_change: Callable[[str, Any], None] | None = None) -> None:
        """Declare every parameter of `sections` (name -> default config) on `node`."""
        self._node, self._on_change = node, on_change
        self.specs = {s.name: s for s in param_specs(sections, dynamic)}
        declared = node.declare_parameters("", [
            (s.name, s.default, descriptor(s)) for s in self.specs.values()])
        self.configs = dict(sections)
        for section in sections:
            values = {self.specs[p.name].field: p.value for p in declared
                      if self.specs[p.name].section == section}
            self.configs[section] = build_config(sections[section], values, section)
        node.add_on_set_parameters_callback(self._validate)
        node.add_post_set_parameters_callback(self._apply)

    def _changes(self, params: list[Parameter]) -> dict[str, dict[str, Any]]:
        out: dict[str, dict[str, Any]] = {}
        for p in params:
            spec = self.specs.get(p.name)
            if spec is not None:
                out.setdefault(spec.section, {})[spec.field] = p.value
        return out

    def _validate(self, params: list[Parameter]) -> SetParametersResult:
        try:
            for section, values in self._changes(params).items():
                build_config(self.configs[section], values, section)
        except ValueError as exc:
            return SetParametersResult(successful=False, reason=str(exc))
        return SetParametersResult(successful=True)

    def _apply(self, params: list[Parameter]) -> None:
        for section, values in self._changes(params).items():
            self.configs[section] = build_config(self.configs[section], values, section)
            if self._on_change is not None:
                self._on_change(section, self.configs[section])
