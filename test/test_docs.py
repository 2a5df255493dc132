"""The generated ROS interface page is current and agrees with the node sources and launch file."""

from __future__ import annotations

from pathlib import Path
import re

import pytest

from blinktrack_ros import docgen

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"


def test_interface_page_is_current(capsys):
    assert docgen.main(["--check", str(DOCS / "interface.md")]) == 0, \
        "run: python -m blinktrack_ros.docgen --write docs/interface.md"


def test_check_fails_on_a_stale_page(tmp_path, capsys):
    stale = tmp_path / "interface.md"
    stale.write_text(docgen.render().replace("| `ids` |", "| `track_ids` |", 1))
    assert docgen.main(["--check", str(stale)]) == 1
    assert "out of date" in capsys.readouterr().err
    assert docgen.main(["--check", str(tmp_path / "missing.md")]) == 1


@pytest.mark.parametrize("executable", list(docgen.NODES))
def test_documented_topics_are_the_ones_the_node_creates(executable):
    documented = {(t.name, t.direction) for t in docgen.TOPICS if t.executable == executable}
    assert docgen.topics_in_source(executable) == documented


def test_every_message_field_is_documented_with_a_comment():
    page = docgen.render()
    for path in sorted((ROOT / "msg").glob("*.msg")):
        declared = [line.split()[1] for line in path.read_text().splitlines()
                    if line.strip() and not line.startswith("#") and "=" not in line]
        _, fields, constants = docgen.parse_msg(path)
        assert [name for _, name, _ in fields] == declared
        assert all(text for _, _, text in fields), path.name
        assert len(constants) == path.read_text().count("=")
        for _, name, text in fields:
            assert f"| `{name}` |" in page and text in page


def test_split_mode_inputs_are_wired_to_outputs_by_the_launch_file():
    """Every input of the split nodes that another split node produces resolves to its output."""
    args, nodes = docgen.launch_info()
    split = ("event_node", "image_node", "fusion_node")
    outputs, inputs = set(), {}
    for t in docgen.TOPICS:
        if t.executable in split:
            name, remaps = nodes[t.executable]
            full = docgen.resolved(t.name, name, remaps, args)
            if t.direction == "pub":
                outputs.add(full)
            else:
                inputs[(t.executable, t.name)] = full
    internal = {k: v for k, v in inputs.items() if k[1].endswith(("tracks", "observations"))}
    assert len(internal) == 4  # event+image take tracks; fusion takes both observations
    assert all(v in outputs for v in internal.values()), internal


def test_relative_links_in_docs_exist():
    for page in DOCS.glob("*.md"):
        for target in re.findall(r"\]\(([^)#:]+)(?:#[^)]*)?\)", page.read_text()):
            assert (page.parent / target).exists(), f"{page.name} links to missing {target}"
