"""Optional numba kernels: compiled at their first use, checked, and a clean fallback.

numba is an optional dependency (`pip install numba`, the `[fast]` extra, or the distro's
python3-numba): each compiled kernel has numpy (or PyPI) code doing the same, and callers ask
`available()` before using it. A kernel is compiled once per process, from numba's disk cache
where one is writable (the package's __pycache__, else numba's per-user cache; without either
it compiles in memory at each start), and checked on a tiny input: a numba that fails to import
or to compile the kernel, or computes a wrong check value, leaves the kernel unavailable with
the reason in `error()`, never an exception in the caller.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
import contextlib
from typing import Any


class Kernel:
    """A numba kernel compiled on first use (see the module docstring).

    Args:
        py_func: the Python function numba compiles (nopython mode, nogil).
        check: called with the compiled function; raises when its result on a tiny input is
            wrong (it also compiles the type signatures callers will use).
        what: its name in error messages.
    """

    def __init__(self, py_func: Callable, check: Callable[[Callable], None], what: str) -> None:
        self.py_func, self.check, self.what = py_func, check, what
        self._compiled: Callable | None = None
        self._error: str | None = None

    def available(self) -> bool:
        """True when numba imports and the kernel compiles and checks (tried once)."""
        return self._load() is not None

    def error(self) -> str | None:
        """Why the kernel is not available (None when it is or was not tried)."""
        return self._error

    def compiled(self) -> Callable[..., Any]:
        """The compiled kernel; raises ImportError where it is not available."""
        k = self._load()
        if k is None:
            raise ImportError(f"{self.what} is not available: {self._error}")
        return k

    @contextlib.contextmanager
    def disabled(self, reason: str = "switched off") -> Iterator[None]:
        """Within the block the kernel is unavailable (callers take their fallback), e.g. to
        measure the fallback beside it; restored after."""
        saved = self._compiled, self._error
        self._compiled, self._error = None, reason
        try:
            yield
        finally:
            self._compiled, self._error = saved

    def _load(self) -> Callable | None:
        if self._compiled is None and self._error is None:
            try:
                import numba
            except ImportError as exc:
                self._error = str(exc)
                return None
            try:
                try:
                    k = numba.njit(cache=True, nogil=True)(self.py_func)
                except RuntimeError:  # no writable cache location: compile in memory
                    k = numba.njit(nogil=True)(self.py_func)
                self.check(k)
            except Exception as exc:  # noqa: BLE001 - an old or broken numba: the fallback
                self._error = f"numba {numba.__version__} did not compile {self.what}: {exc}"
                return None
            self._compiled = k
        return self._compiled
