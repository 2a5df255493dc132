"""blinktrack_ros.jit.Kernel: compiled once, checked, and unavailable (never raising in the
caller) when the check fails; the two kernels of the package compile here."""

from __future__ import annotations

import numpy as np
import pytest

from blinktrack_ros.jit import Kernel


def _add_one(a):
    out = np.empty_like(a)
    for i in range(a.shape[0]):
        out[i] = a[i] + 1
    return out


def _check_ok(k) -> None:
    if k(np.arange(3)).tolist() != [1, 2, 3]:
        raise RuntimeError("wrong")


def _check_wrong(k) -> None:
    if k(np.arange(3)).tolist() != [0, 1, 2]:  # what the kernel does not compute
        raise RuntimeError("check value differs")


def test_kernel_compiles_checks_and_falls_back() -> None:
    good = Kernel(_add_one, _check_ok, "add one")
    assert good.available() and good.error() is None
    np.testing.assert_array_equal(good.compiled()(np.array([5, 6])), [6, 7])
    assert good.compiled() is good.compiled()  # compiled once
    bad = Kernel(_add_one, _check_wrong, "add one")
    assert not bad.available()
    assert "did not compile add one: check value differs" in bad.error()
    with pytest.raises(ImportError, match="add one is not available"):
        bad.compiled()


def test_package_kernels_available() -> None:
    """numba is installed by the project's setup: both kernels must compile and check."""
    from blinktrack_ros.events import evt3_jit, sbt_jit

    for module in (evt3_jit, sbt_jit):
        assert module.available(), module.error()
