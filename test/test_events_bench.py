"""`blinktrack bench events --json`: one JSON object with the decode and SBT figures."""

from __future__ import annotations

import json

from blinktrack_ros.cli import main


def test_bench_events_json(capsys, shared_data):
    assert main(["bench", "events", "--json", "--repeats", "1"]) == 0
    figures = json.loads(capsys.readouterr().out)
    assert figures["bench"] == "events"
    assert figures["evt3_events"] == 343474  # test_events_1, as the PyPI decoder counts
    assert figures["evt3_backend"] == "numba"  # installed by the project's own setup
    for key in ("evt3_decode_mev_per_s", "evt3_pypi_package_bare_mev_per_s",
                "evt3_runs_of_32_mev_per_s", "evt3_pypi_backend_decode_mev_per_s",
                "mono_decode_mev_per_s", "dvs_raw_decode_mev_per_s", "sbt_patches_ms"):
        assert figures[key] > 0
    assert main(["bench", "events", "--bag", "/nonexistent"]) == 2
