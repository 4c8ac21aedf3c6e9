"""Count the host synchronisations a CuPy run of an engine would make, on NumPy.

A CuPy program stalls on the host whenever it needs a device value on the host: a
scalar read (``int(a)``, ``bool(a)``, ``float(a)``, ``a.item()``, ``a.tolist()``, an
array used as a Python index or size), a copy out (``a.get()``, ``cupy.asnumpy``), and
every operation whose *output shape* depends on the data, which must read a count back
before it can allocate: ``nonzero`` / ``flatnonzero`` / ``argwhere`` / one-argument
``where``, ``unique``, boolean-mask indexing ``a[mask]`` and ``compress``/``extract``,
``repeat`` with per-element counts, and ``bincount`` without ``minlength`` (its length is
``max() + 1``). Each of those is one round trip of a launch queue that would otherwise
run ahead, so their number per tick is what bounds a GPU tick loop once the kernels
themselves are fast (performance-notes.md 4.4: a whole tick as a fixed kernel sequence,
captured as a CUDA graph, needs none).

Without a GPU that number can still be counted exactly: :data:`xp` is a NumPy namespace
whose arrays (:class:`SyncArray`, an ``ndarray`` subclass) count each of the events above
in :data:`COUNTS`, and whose reductions and scalar indexing return 0-d arrays, as CuPy's
do, so that the Python-level ``int(...)``/``bool(...)`` that follows is seen. Results are
NumPy results: the engine runs unchanged (``kernels.tick.run_program_on(xp, ...)``), only
slower.

It counts call sites executed, not bytes. Two approximations, both towards fewer syncs:
``bincount`` with ``minlength`` counts as none (CuPy may still read the maximum), and a
Python ``for`` over an array is not seen (the engine iterates over none).
:data:`LAUNCHES` counts ufunc calls, namespace function calls and fancy-index gathers and
stores: about one CuPy kernel each, a proxy for the launch overhead, not a kernel count.
"""

from __future__ import annotations

import collections
import functools
import sys
import types
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np

COUNTS: collections.Counter[str] = collections.Counter()
SITES: collections.Counter[tuple[str, str]] = collections.Counter()  # (function, line), if on
_sites = False
_inside = 0  # > 0 while a counted NumPy function runs: its own internals are not counted
LAUNCHES = [0]  # array operations (ufuncs, functions, fancy index/stores): ~CuPy kernels


def _op() -> None:
    if not _inside:
        LAUNCHES[0] += 1


def _sync(what: str) -> None:
    if _inside:
        return
    COUNTS[what] += 1
    if _sites:
        f = sys._getframe(2)
        while f is not None and (
            f.f_globals.get("__name__") == __name__
            or f.f_globals.get("__name__", "").startswith("numpy")
        ):
            f = f.f_back
        if f is not None:
            SITES[(f.f_code.co_qualname, f"{f.f_code.co_filename}:{f.f_lineno}")] += 1


def track_sites(on: bool = True) -> None:
    """Also count per calling function and line in :data:`SITES` (slower)."""
    global _sites
    _sites = on
    SITES.clear()


def total() -> int:
    """Host synchronisations counted so far (all kinds)."""
    return sum(COUNTS.values())


@contextmanager
def counting() -> Iterator[collections.Counter[str]]:
    """Reset :data:`COUNTS`, run the block, and leave its counts in the yielded Counter."""
    COUNTS.clear()
    LAUNCHES[0] = 0
    out: collections.Counter[str] = collections.Counter()
    try:
        yield out
    finally:
        out.update(COUNTS)
        out["(array operations)"] = LAUNCHES[0]


def _wrap(r: Any) -> Any:
    if isinstance(r, np.ndarray) and not isinstance(r, SyncArray):
        return r.view(SyncArray)
    if isinstance(r, np.generic):
        return np.asarray(r).view(SyncArray)
    if isinstance(r, tuple):
        return tuple(_wrap(v) for v in r)
    if isinstance(r, list):
        return [_wrap(v) for v in r]
    return r


def _is_bool_index(k: Any) -> bool:
    if isinstance(k, np.ndarray) and k.dtype == np.bool_ and k.ndim > 0:
        return True
    if isinstance(k, tuple):
        return any(_is_bool_index(v) for v in k)
    return False


def _fancy(k: Any) -> bool:
    """An index that gathers (an array) rather than taking a view (ints and slices)."""
    if isinstance(k, tuple):
        return any(isinstance(v, np.ndarray | list) for v in k)
    return isinstance(k, np.ndarray | list)


def _scalar_keys(k: Any) -> bool:
    return isinstance(k, np.ndarray) and k.ndim == 0


class SyncArray(np.ndarray):
    """An ndarray that counts the host reads a CuPy array would make (module docstring).

    Its ``__module__`` starts with "cupy" so that :func:`kernels.backend.to_numpy` copies
    it out with :meth:`get`, as it would a CuPy array, and the copy is counted.
    """

    __module__ = "cupy_synccount"

    def __array_wrap__(self, arr, context=None, return_scalar=False):  # noqa: ANN001
        return np.asarray(arr).view(SyncArray)  # 0-d stays an array, as in CuPy

    def __array_ufunc__(self, ufunc, method, *inputs, **kwargs):  # noqa: ANN001
        _op()
        global _inside
        _inside += 1
        try:
            args = [np.asarray(x) if isinstance(x, SyncArray) else x for x in inputs]
            if "out" in kwargs:
                kwargs["out"] = tuple(
                    np.asarray(x) if isinstance(x, SyncArray) else x for x in kwargs["out"]
                )
            r = getattr(ufunc, method)(*args, **kwargs)
        finally:
            _inside -= 1
        return None if r is None else _wrap(r)

    def __getitem__(self, k: Any) -> Any:
        if _fancy(k):
            _op()
        if _is_bool_index(k):
            _sync("bool-mask index")
        if isinstance(k, tuple):
            for v in k:
                if _scalar_keys(v):
                    _sync("0-d array as index")
        elif _scalar_keys(k):
            _sync("0-d array as index")
        return _wrap(np.ndarray.__getitem__(self, k))

    def __setitem__(self, k: Any, v: Any) -> None:
        # A boolean-mask store (``a[mask] = v``) is a masked kernel in CuPy, not a sync.
        _op()
        np.ndarray.__setitem__(self, k, v)

    def __bool__(self) -> bool:
        _sync("bool()")
        return bool(np.asarray(self))

    def __int__(self) -> int:
        _sync("int()")
        return int(np.asarray(self))

    def __float__(self) -> float:
        _sync("float()")
        return float(np.asarray(self))

    def __index__(self) -> int:
        _sync("array as Python int")
        return np.asarray(self).__index__()

    def item(self, *a: Any) -> Any:
        _sync("item()")
        return np.asarray(self).item(*a)

    def tolist(self) -> Any:
        _sync("tolist()")
        return np.asarray(self).tolist()

    def get(self) -> np.ndarray:
        """CuPy's device-to-host copy."""
        _sync("get()")
        return np.asarray(self).copy()

    def nonzero(self) -> tuple[np.ndarray, ...]:
        _sync("nonzero")
        return _wrap(np.asarray(self).nonzero())


# Functions whose output shape depends on the data (a count read back first).
_DATA_SHAPED = {"nonzero", "flatnonzero", "argwhere", "unique", "compress", "extract"}


def _counted(name: str, f: Any) -> Any:
    @functools.wraps(f)
    def g(*a: Any, **kw: Any) -> Any:
        _op()
        if name in _DATA_SHAPED:
            _sync(name)
        elif name == "where" and len(a) + len(kw) == 1:
            _sync("where (one argument)")
        elif name == "repeat" and len(a) > 1 and np.ndim(a[1]) > 0:
            _sync("repeat (array counts)")
        elif name == "bincount" and "minlength" not in kw and len(a) < 3:
            _sync("bincount (no minlength)")
        elif name == "asnumpy":
            _sync("get()")
        global _inside
        _inside += 1
        try:
            return _wrap(f(*a, **kw))
        finally:
            _inside -= 1

    return g


class _Namespace(types.ModuleType):
    """``numpy`` with every function's arrays wrapped as :class:`SyncArray`."""

    def __getattr__(self, name: str) -> Any:
        if name == "asnumpy":
            f = np.asarray
        else:
            f = getattr(np, name)
        if callable(f) and not isinstance(f, type):
            g = _counted(name, f)
            setattr(self, name, g)
            return g
        return f


xp = _Namespace("numpy")  # named "numpy" so kernels.backend.is_cupy() says False
