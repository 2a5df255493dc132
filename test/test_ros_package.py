"""package.xml / CMakeLists.txt: valid format 3 manifest with every dependency issue 2 lists."""

from __future__ import annotations

from pathlib import Path
import re

import pytest

REPO = Path(__file__).resolve().parent.parent
REQUIRED_KEYS = {"rclpy", "std_msgs", "sensor_msgs", "builtin_interfaces", "diagnostic_msgs",
                 "event_camera_msgs", "message_filters", "cv_bridge", "launch_ros",
                 "rosidl_default_generators", "rosidl_default_runtime", "python3-numpy",
                 "python3-opencv"}


def test_manifest_valid_and_complete() -> None:
    """catkin_pkg (what colcon and rosdep use) parses and validates it; keys as required."""
    catkin_pkg = pytest.importorskip("catkin_pkg.package", reason="no catkin_pkg (--ros)")
    pkg = catkin_pkg.parse_package(str(REPO / "package.xml"))
    pkg.validate()
    assert pkg.name == "blinktrack_ros" and pkg.package_format == 3
    assert pkg.get_build_type() == "ament_cmake"
    assert "rosidl_interface_packages" in [g.name for g in pkg.member_of_groups]
    keys = {d.name for d in pkg.build_depends + pkg.buildtool_depends + pkg.exec_depends
            + pkg.build_export_depends}
    assert REQUIRED_KEYS <= keys, REQUIRED_KEYS - keys
    version = re.search(r'^version = "(.+)"', (REPO / "pyproject.toml").read_text(), re.M)
    assert pkg.version == version.group(1)


def test_cmake_installs_existing_files() -> None:
    """Every message and program CMakeLists.txt names exists (scripts executable)."""
    text = (REPO / "CMakeLists.txt").read_text()
    msgs = re.findall(r'"(msg/\w+\.msg)"', text)
    assert sorted(msgs) == sorted(f"msg/{p.name}" for p in (REPO / "msg").glob("*.msg"))
    programs = re.search(r"install\(PROGRAMS(.*?)DESTINATION", text, re.S).group(1).split()
    assert programs
    for prog in programs:
        assert (REPO / prog).stat().st_mode & 0o111, prog
    assert "ament_python_install_package" not in re.sub(r"#.*", "", text)  # rosidl_python#141
