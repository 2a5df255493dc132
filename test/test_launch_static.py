"""Static checks of launch/*.launch.py (launch and launch_ros cannot be installed here).

The files must compile, import only documented launch / launch_ros API, and name only
executables, parameters, launch arguments and topics that exist.
"""

from __future__ import annotations

import ast
from pathlib import Path
import re

import pytest

from blinktrack_ros.nodes.config import DYNAMIC_SECTIONS
from blinktrack_ros.nodes.params import param_specs

REPO = Path(__file__).resolve().parent.parent
LAUNCH_FILES = sorted((REPO / "launch").glob("*.launch.py"))
# Public API documented in the launch / launch_ros API references (Jazzy).
DOCUMENTED = {
    "launch": {"LaunchDescription"},
    "launch.actions": {"DeclareLaunchArgument", "GroupAction", "IncludeLaunchDescription",
                       "LogInfo", "SetLaunchConfiguration"},
    "launch.conditions": {"IfCondition", "UnlessCondition", "LaunchConfigurationEquals"},
    "launch.substitutions": {"LaunchConfiguration", "PathJoinSubstitution", "PythonExpression",
                             "TextSubstitution", "EnvironmentVariable"},
    "launch_ros.actions": {"Node", "SetParameter", "PushRosNamespace", "SetRemap"},
    "launch_ros.parameter_descriptions": {"ParameterValue"},
    "launch_ros.substitutions": {"FindPackageShare"},
}
REQUIRED_ARGUMENTS = {"events", "image", "camera_info", "event_msg_type", "config",
                      "use_sim_time", "single_process", "event_weights", "image_weights"}
# Topic names each executable subscribes to (relative names, remappable).
NODE_INPUTS = {
    "event_node": {"events", "image", "tracks"},
    "image_node": {"image", "camera_info", "tracks"},
    "fusion_node": {"event_observations", "image_observations", "camera_info", "image"},
    "blinktrack_node": {"events", "image", "camera_info"},
}


def _calls(tree: ast.AST, name: str) -> list[ast.Call]:
    return [n for n in ast.walk(tree) if isinstance(n, ast.Call)
            and isinstance(n.func, ast.Name) and n.func.id == name]


def _kw(call: ast.Call, key: str) -> ast.AST | None:
    return next((k.value for k in call.keywords if k.arg == key), None)


def _installed_programs() -> set[str]:
    text = (REPO / "CMakeLists.txt").read_text()
    block = re.search(r"install\(PROGRAMS(.*?)DESTINATION", text, re.S).group(1)
    return {Path(p).name for p in block.split()}


def test_launch_files_exist() -> None:
    assert [p.name for p in LAUNCH_FILES] == ["blinktrack.launch.py"]


@pytest.mark.parametrize("path", LAUNCH_FILES, ids=lambda p: p.name)
def test_compiles_and_imports_documented_api_only(path: Path) -> None:
    """It compiles, and every import is a documented launch/launch_ros name."""
    source = path.read_text()
    compile(source, str(path), "exec")
    tree = ast.parse(source)
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            pytest.fail(f"plain import in {path.name}: {[a.name for a in node.names]}")
        if isinstance(node, ast.ImportFrom):
            assert node.module in DOCUMENTED, f"{node.module} is not launch/launch_ros API"
            for alias in node.names:
                assert alias.name in DOCUMENTED[node.module], f"{node.module}.{alias.name}"
    funcs = [n.name for n in tree.body if isinstance(n, ast.FunctionDef)]
    assert "generate_launch_description" in funcs


@pytest.mark.parametrize("path", LAUNCH_FILES, ids=lambda p: p.name)
def test_names_exist(path: Path) -> None:
    """Executables are installed scripts with a main(); parameters, arguments, topics exist."""
    tree = ast.parse(path.read_text())
    programs = _installed_programs()
    known_params = {s.name for s in param_specs(dynamic=DYNAMIC_SECTIONS)} | {"use_sim_time"}
    args_dict = next(n.value for n in tree.body if isinstance(n, ast.Assign)
                     and n.targets[0].id == "ARGUMENTS")
    declared = {k.value for k in args_dict.keys}
    assert REQUIRED_ARGUMENTS <= declared
    nodes = _calls(tree, "Node")
    assert {ast.literal_eval(_kw(n, "executable")) for n in nodes} == set(NODE_INPUTS)
    for node in nodes:
        assert ast.literal_eval(_kw(node, "package")) == "blinktrack_ros"
        exe = ast.literal_eval(_kw(node, "executable"))
        script = REPO / "scripts" / exe
        assert exe in programs and script.stat().st_mode & 0o111, exe
        module = re.search(r"from (blinktrack_ros\.nodes\.\w+) import main",
                           script.read_text()).group(1)
        module_file = REPO / (module.replace(".", "/") + ".py")
        assert "\ndef main(" in module_file.read_text(), module
        remaps = _kw(node, "remappings")
        sources = {ast.literal_eval(t.elts[0]) for t in remaps.elts}
        assert sources <= NODE_INPUTS[exe], (exe, sources - NODE_INPUTS[exe])
    # parameter names: string keys of every dict literal, and SetParameter names
    for d in (n for n in ast.walk(tree) if isinstance(n, ast.Dict)):
        for key in d.keys:
            if isinstance(key, ast.Constant) and "." in str(key.value):
                assert key.value in known_params, key.value
    for call in _calls(tree, "SetParameter"):
        assert ast.literal_eval(_kw(call, "name")) in known_params
    # every LaunchConfiguration(...) / arg(...) names a declared argument
    for call in _calls(tree, "arg") + _calls(tree, "LaunchConfiguration"):
        assert ast.literal_eval(call.args[0]) in declared


def test_node_inputs_match_the_code() -> None:
    """The topic names listed above are the ones the node classes subscribe to."""
    for exe, topics in NODE_INPUTS.items():
        module = re.search(r"from (blinktrack_ros\.nodes\.\w+) import main",
                           (REPO / "scripts" / exe).read_text()).group(1)
        text = (REPO / (module.replace(".", "/") + ".py")).read_text()
        for topic in topics:
            assert f'"{topic}"' in text, (exe, topic)
