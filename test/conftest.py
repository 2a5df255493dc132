"""Shared fixtures: the real recordings in ../shared/data (skipped with a message when absent)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parent.parent
SHARED_DATA = REPO.parent / "shared" / "data"


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The ../shared/data folder (see its SOURCES.md); skip when it is not beside the checkout."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"test data not found at {SHARED_DATA} (clone the repo next to shared/)")
    return SHARED_DATA


@pytest.fixture
def rng() -> np.random.Generator:
    """A seeded generator: tests are deterministic."""
    return np.random.default_rng(12345)


@pytest.fixture
def ros_domain():
    """A ROS domain id held by this test alone (see rosutil.private_domain)."""
    from rosutil import private_domain

    with private_domain() as domain:
        yield domain


@pytest.fixture
def ctx(ros_domain):
    """An rclpy context on this test's private ROS domain (shut down afterwards)."""
    import rclpy

    c = rclpy.Context()
    rclpy.init(context=c, domain_id=ros_domain)
    yield c
    rclpy.shutdown(context=c)
