"""Generate `docs/interface.md`: nodes, topics, messages, launch arguments and parameters.

Everything is read from the code so the page cannot drift: the message fields and their
comments from `msg/*.msg`, the launch arguments and remappings from the launch file (parsed,
not run), the parameters from the config dataclasses (`nodes.params`), and the topics from
`TOPICS` below, which `test/test_docs.py` checks against the node sources (`topics_in_source`).
No rclpy needed:

    python -m blinktrack_ros.docgen --write docs/interface.md
    python -m blinktrack_ros.docgen --check docs/interface.md   # exit 1 when out of date
"""

from __future__ import annotations

import argparse
import ast
from dataclasses import dataclass
from pathlib import Path
import re
import sys

from blinktrack_ros.images import ENCODINGS
from blinktrack_ros.resources import find_share_file

PACKAGE = "blinktrack_ros"
NODES_DIR = Path(__file__).parent / "nodes"


@dataclass(frozen=True)
class Topic:
    """One topic of one node.

    Attributes:
        executable: the node executable (`ros2 run blinktrack_ros <executable>`).
        name: the name in the node (`~/x` is private: /<node name>/x).
        direction: "sub" or "pub".
        msg_type: ROS message type.
        description: what flows on it.
    """

    executable: str
    name: str
    direction: str
    msg_type: str
    description: str


# executable -> (module in blinktrack_ros/nodes, what it is)
NODES = {
    "blinktrack_node": ("blinktrack", "the whole tracker in one node (default; lowest latency, "
                        "same logic as the offline replay)"),
    "event_node": ("event", "split mode: event module (event windows -> observations)"),
    "image_node": ("image", "split mode: image module (frames -> observations, seeds)"),
    "fusion_node": ("fusion", "split mode: Kalman fusion and the track table"),
}
EVENTS_TYPE = ("`event_camera_msgs/EventPacket` or `dvs_msgs/EventArray` (`node.event_msg_type`; "
               "`auto`: the type the topic is published with)")
OBS, TRACKS = "`blinktrack_ros/ObservationArray`", "`blinktrack_ros/TrackArray`"
IMAGE = "`sensor_msgs/Image` (" + ", ".join(ENCODINGS) + ")"
INFO = "`sensor_msgs/CameraInfo`"
CLOUD = "`sensor_msgs/PointCloud`"
DEBUG = "`sensor_msgs/Image` (bgr8)"
FEATURE_TEXT = ("VINS-Fusion feature cloud of the TRACKED tracks (see vins_fusion.md), per "
                "frame once CameraInfo is known")
DEBUG_TEXT = "tracks drawn on the frame, at most `node.debug_image_rate_hz`"
TOPICS: tuple[Topic, ...] = (
    Topic("blinktrack_node", "events", "sub", EVENTS_TYPE, "event stream"),
    Topic("blinktrack_node", "image", "sub", IMAGE, "frames: reference patches, image module"),
    Topic("blinktrack_node", "camera_info", "sub", INFO,
          "intrinsics: undistorted output and ~/feature (optional)"),
    Topic("blinktrack_node", "~/tracks", "pub", TRACKS, "fused tracks after every update"),
    Topic("blinktrack_node", "~/event_observations", "pub", OBS,
          "event observations behind each update"),
    Topic("blinktrack_node", "~/image_observations", "pub", OBS,
          "image (or KLT) observations behind each update"),
    Topic("blinktrack_node", "~/feature", "pub", CLOUD, FEATURE_TEXT),
    Topic("blinktrack_node", "~/debug_image", "pub", DEBUG, DEBUG_TEXT),
    Topic("blinktrack_node", "~/tracks_refined", "pub", TRACKS,
          "with `node.publish_refined`: at each frame, the event windows since the previous "
          "frame smoothed with it (fixed lag of one frame), stamped with the windows' times, "
          "published with the first window after that frame"),
    Topic("event_node", "events", "sub", EVENTS_TYPE, "event stream"),
    Topic("event_node", "image", "sub", IMAGE, "reference patches at track birth"),
    Topic("event_node", "tracks", "sub", TRACKS, "fused positions = next crop centres"),
    Topic("event_node", "~/observations", "pub", OBS, "EVENT observations per event window"),
    Topic("image_node", "image", "sub", IMAGE, "frames"),
    Topic("image_node", "camera_info", "sub", INFO,
          "optional: paired with the image by stamp (10 ms); without one the frames are used "
          "after `node.camera_info_wait_s`"),
    Topic("image_node", "tracks", "sub", TRACKS, "fused positions = search starts"),
    Topic("image_node", "~/observations", "pub", OBS, "IMAGE observations and SEED arrays"),
    Topic("fusion_node", "event_observations", "sub", OBS, "from event_node"),
    Topic("fusion_node", "image_observations", "sub", OBS, "from image_node (SEED starts tracks)"),
    Topic("fusion_node", "camera_info", "sub", INFO, "optional: undistorted output, ~/feature"),
    Topic("fusion_node", "image", "sub", IMAGE, "only for ~/debug_image"),
    Topic("fusion_node", "~/tracks", "pub", TRACKS, "fused tracks after every update"),
    Topic("fusion_node", "~/feature", "pub", CLOUD, FEATURE_TEXT),
    Topic("fusion_node", "~/debug_image", "pub", DEBUG, DEBUG_TEXT),
)
DIAGNOSTICS_TEXT = (
    "Every node also publishes `/diagnostics` (`diagnostic_msgs/DiagnosticArray`, every "
    "`node.diagnostics_period_s` of the steady clock, so also while `/clock` stands still): per "
    "input topic the rate, received / malformed / dropped counts and the latency from the "
    "wall-clock arrival of an input to the publication of its result, the inbox (messages "
    "waiting, dropped when full), arrays held back because they were older than the last "
    "published one, plus the pipeline or module counters (windows merged / skipped, frames "
    "skipped behind a backlog, births whose frame was gone, losses, time resets) and the "
    "CameraInfo and event type state. The level is WARN when more than "
    "`node.loss_warn_fraction` of the inputs of a period were lost or unused, ERROR while the "
    "event topic is published with another type than `node.event_msg_type`. Subscription "
    "callbacks only enqueue; a worker thread per node processes what waits. Inputs use the "
    "sensor-data QoS (keep last `node.input_queue_depth`, reliability "
    "`node.input_reliability`, best effort by default); outputs are reliable, volatile, keep "
    "last 10, and their stamps never go back.")


def topics_in_source(executable: str) -> set[tuple[str, str]]:
    """(name, direction) of the topics a node's source creates, found by pattern, not import.

    Publishers: every `"~/..."` string literal. Subscriptions: the topic argument of
    `self.subscribe(Type, "name", ...)` and `message_filters.Subscriber(self, Type, "name")`,
    the names of a `for topic in ("a", "b"):` loop around a subscribe call, `events` for an
    EventTopic and `camera_info` for a CameraInput.
    """
    text = (NODES_DIR / f"{NODES[executable][0]}.py").read_text()
    found = {(m, "pub") for m in re.findall(r'"(~/[\w/]+)"', text)}
    found |= {(m, "sub") for m in re.findall(r'subscribe\([^"\n]*?,\s*"(\w+)"', text)}
    found |= {(m, "sub") for m in re.findall(r'Subscriber\(self,[^"\n]*?,\s*"(\w+)"', text)}
    for group in re.findall(r'for topic in \(([^)]*)\):\s*\n\s*self\.subscribe', text):
        found |= {(m, "sub") for m in re.findall(r'"(\w+)"', group)}
    if "EventTopic(self" in text:  # nodes/event_topic.py subscribes `events`
        found.add(("events", "sub"))
    if "CameraInput(self" in text:  # nodes/camera_input.py subscribes `camera_info`
        found.add(("camera_info", "sub"))
    return found


def parse_msg(path: Path) -> tuple[list[str], list[tuple[str, str, str]], list[str]]:
    """A .msg file -> (header comment lines, fields (type, name, comment), constants)."""
    header: list[str] = []
    fields: list[tuple[str, str, str]] = []
    constants: list[str] = []
    comment: list[str] = []
    seen_decl = False
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if line.startswith("#"):
            comment.append(line.lstrip("#").strip())
        elif not line:
            if comment and not seen_decl and not header:
                header, comment = comment, []
        else:
            seen_decl = True
            decl = line.split("#")[0].strip()
            if "=" in decl:
                constants.append(decl)
            else:
                mtype, name = decl.split()[:2]
                fields.append((mtype, name, " ".join(comment)))
            comment = []
    return header, fields, constants


def render_msgs() -> str:
    """Markdown of every msg/*.msg: description, constants, fields with their comments."""
    out = ["## Messages", ""]
    for path in sorted(find_share_file("msg/TrackArray.msg").parent.glob("*.msg")):
        header, fields, constants = parse_msg(path)
        out += [f"### `{PACKAGE}/{path.stem}`", "", " ".join(header), ""]
        if constants:
            out += ["Constants: " + ", ".join(f"`{c}`" for c in constants) + ".", ""]
        out += ["| field | type | meaning |", "|---|---|---|"]
        out += [f"| `{name}` | `{mtype}` | {text} |" for mtype, name, text in fields]
        out.append("")
    return "\n".join(out)


def launch_info() -> tuple[dict[str, tuple[str, str]], dict[str, tuple[str, dict[str, str]]]]:
    """Parse the launch file: arguments {name: (default, text)} and per executable
    (node name, {topic: remapped to})."""
    tree = ast.parse(find_share_file("launch/blinktrack.launch.py").read_text())
    args: dict[str, tuple[str, str]] = {}
    nodes: dict[str, tuple[str, dict[str, str]]] = {}
    names = {n.targets[0].id: n.value.value for n in ast.walk(tree)
             if isinstance(n, ast.Assign) and isinstance(n.targets[0], ast.Name)
             and isinstance(n.value, ast.Constant)}  # e.g. tracks = "/blinktrack/tracks"
    for node in ast.walk(tree):
        if isinstance(node, ast.Assign) and getattr(node.targets[0], "id", "") == "ARGUMENTS":
            for key, value in zip(node.value.keys, node.value.values):
                default, text = value.elts
                shown = (str(default.value) if isinstance(default, ast.Constant)
                         else "share/blinktrack_ros/config/blinktrack.yaml")
                args[key.value] = (shown, text.value)
        if isinstance(node, ast.Call) and getattr(node.func, "id", "") == "Node":
            kw = {k.arg: k.value for k in node.keywords}
            remaps = {}
            for pair in kw["remappings"].elts:
                src, dst = pair.elts
                remaps[src.value] = _launch_value(dst, names)
            nodes[kw["executable"].value] = (kw["name"].value, remaps)
    return args, nodes


def _launch_value(expr: ast.expr, names: dict[str, str]) -> str:
    """A remapping target: a string, a module-level string name, or `$arg` for arg("x")."""
    if isinstance(expr, ast.Constant):
        return str(expr.value)
    if isinstance(expr, ast.Name):
        return names[expr.id]
    return f"${expr.args[0].value}"


def resolved(name: str, node_name: str, remaps: dict[str, str],
             args: dict[str, tuple[str, str]]) -> str:
    """The absolute topic name under the launch file's defaults."""
    if name.startswith("~/"):
        return f"/{node_name}/{name[2:]}"
    target = remaps.get(name, name)
    if target.startswith("$"):
        target = args[target[1:]][0]
    return target if target.startswith("/") else f"/{target}"


def render_topics() -> str:
    """Markdown: the executables and, per executable, its topics with launch-resolved names."""
    args, launch_nodes = launch_info()
    out = ["## Nodes", "", "| executable | node name (launch) | role |", "|---|---|---|"]
    out += [f"| `{exe}` | `{launch_nodes[exe][0]}` | {role} |"
            for exe, (_, role) in NODES.items()]
    out += ["", "## Topics", "",
            "Names as the node creates them (`~/x` = `/<node name>/x`) and as the launch file "
            "resolves them with its default arguments.", ""]
    for exe in NODES:
        node_name, remaps = launch_nodes[exe]
        out += [f"### `{exe}`", "", "| in/out | name in node | with the launch file | type | "
                "content |", "|---|---|---|---|---|"]
        for t in (t for t in TOPICS if t.executable == exe):
            arrow = "in" if t.direction == "sub" else "out"
            out.append(f"| {arrow} | `{t.name}` | `{resolved(t.name, node_name, remaps, args)}` "
                       f"| {t.msg_type} | {t.description} |")
        out.append("")
    out += [DIAGNOSTICS_TEXT, "", "## Launch arguments", "",
            "`ros2 launch blinktrack_ros blinktrack.launch.py name:=value ...`", "",
            "| argument | default | meaning |", "|---|---|---|"]
    out += [f"| `{k}` | {f'`{d}`' if d else '(empty)'} | {text} |"
            for k, (d, text) in args.items()]
    return "\n".join(out) + "\n"


def render_feature_cloud() -> str:
    """Markdown: the channels of the VINS-Fusion cloud, from `nodes.camera.FEATURE_CHANNELS`."""
    from blinktrack_ros.nodes.camera import FEATURE_CHANNELS

    names = ", ".join(f"{i} `{name}`" for i, name in enumerate(FEATURE_CHANNELS))
    return "\n".join([
        "### `~/feature` (`sensor_msgs/PointCloud`, VINS-Fusion feature format)", "",
        "One point per TRACKED track: undistorted normalised (x/z, y/z, 1). Channels: "
        f"{names}. Details: [vins_fusion.md](vins_fusion.md).", ""])


def render_parameters() -> str:
    """Markdown: the parameter table generated from the config dataclasses."""
    from blinktrack_ros.nodes.config import DYNAMIC_SECTIONS
    from blinktrack_ros.nodes.params import param_specs, to_markdown

    return "\n".join([
        "## Parameters", "",
        "Every node declares the sections it uses (`fusion_node`: `node`, `fusion`; the others: "
        "all). `runtime: yes` parameters can be changed with `ros2 param set`; values outside "
        "the range, or rejected by the config class, are refused with the reason. The same "
        "table is [parameters.md](parameters.md) and the defaults file is "
        "`config/blinktrack.yaml` (both generated by `python -m blinktrack_ros.nodes.params`).",
        "", to_markdown(param_specs(dynamic=DYNAMIC_SECTIONS))])


def render() -> str:
    """The whole docs/interface.md."""
    intro = ["# ROS interface", "",
             "<!-- Generated by `python -m blinktrack_ros.docgen --write docs/interface.md`; "
             "do not edit (test/test_docs.py fails when it is out of date). -->", "",
             "Generated from the code: topics from `blinktrack_ros/docgen.py` (checked against "
             "the node sources), messages from `msg/*.msg`, launch arguments from "
             "`launch/blinktrack.launch.py`, parameters from the config dataclasses. How to run "
             "the nodes: [ros.md](ros.md).", ""]
    return "\n".join(intro + [render_topics(), render_msgs() + render_feature_cloud(),
                               render_parameters()])


def main(argv: list[str] | None = None) -> int:
    """`python -m blinktrack_ros.docgen`: print, write or check docs/interface.md."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    group = ap.add_mutually_exclusive_group()
    group.add_argument("--write", metavar="FILE", help="write the page")
    group.add_argument("--check", metavar="FILE", help="exit 1 if FILE is not current")
    args = ap.parse_args(argv)
    text = render()
    if args.write:
        Path(args.write).write_text(text)
    elif args.check:
        path = Path(args.check)
        if not path.is_file() or path.read_text() != text:
            print(f"{path} is out of date: run python -m blinktrack_ros.docgen --write {path}",
                  file=sys.stderr)
            return 1
    else:
        sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
