"""Array backend selection: NumPy or CuPy, chosen explicitly, never silently.

This is the only module in the project that imports ``cupy``, and it does so lazily, so
the package imports and runs on machines without CuPy or a GPU. Layer rule: kernels get
their namespace from their input arrays (:func:`array_namespace`); only constructors
take an explicit ``xp``, which the caller obtains once from :func:`get_xp`.
"""

from __future__ import annotations

import functools
import sys
from types import ModuleType
from typing import Any

import numpy as np

BACKENDS = ("auto", "numpy", "cupy")

Array = Any  # numpy.ndarray or cupy.ndarray; kept loose so CuPy need not be importable


class BackendError(RuntimeError):
    """A requested array backend cannot be used on this machine."""


@functools.lru_cache(maxsize=1)
def gpu_available() -> bool:
    """True when CuPy imports and sees at least one usable CUDA device."""
    try:
        import cupy

        return bool(cupy.cuda.is_available())
    except Exception:  # ImportError, CUDA driver/runtime errors: all mean "no GPU"
        return False


def get_xp(backend: str = "auto") -> ModuleType:
    """Return the array namespace for ``backend`` ("auto", "numpy" or "cupy").

    "auto" picks CuPy when a usable GPU is present and NumPy otherwise. "cupy" without a
    usable GPU raises :class:`BackendError` rather than falling back.
    """
    if backend == "numpy":
        return np
    if backend == "auto":
        return _cupy() if gpu_available() else np
    if backend == "cupy":
        if not gpu_available():
            raise BackendError("backend='cupy' requested but no usable CUDA GPU/CuPy was found")
        return _cupy()
    raise ValueError(f"unknown backend {backend!r}; allowed: {', '.join(map(repr, BACKENDS))}")


def _cupy() -> ModuleType:
    import cupy

    return cupy


def is_cupy(xp: ModuleType) -> bool:
    """True when ``xp`` is the CuPy module."""
    return getattr(xp, "__name__", "") == "cupy"


def array_namespace(*arrays: Any) -> ModuleType:
    """Return numpy or cupy according to the types of ``arrays``.

    Python scalars and NumPy scalars are neutral. CuPy is consulted only if it has
    already been imported (so NumPy-only runs never import it). Mixing NumPy and CuPy
    arrays raises ``TypeError``.
    """
    cupy = sys.modules.get("cupy")
    if cupy is None:
        return np
    found_cupy = found_numpy = False
    for a in arrays:
        if isinstance(a, cupy.ndarray):
            found_cupy = True
        elif isinstance(a, np.ndarray):
            found_numpy = True
    if found_cupy and found_numpy:
        names = sorted({type(a).__module__ + "." + type(a).__name__ for a in arrays})
        raise TypeError(f"Mixed array types {names} are not supported.")
    return cupy if found_cupy else np


def to_numpy(a: Any) -> np.ndarray:
    """Copy a CuPy array to the host; pass NumPy arrays (and array-likes) through."""
    if hasattr(a, "get") and type(a).__module__.startswith("cupy"):
        return a.get()
    return np.asarray(a)
