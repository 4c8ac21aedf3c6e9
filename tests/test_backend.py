"""kernels.backend: explicit backend choice, no silent fallback, namespace from arrays."""

from __future__ import annotations

import numpy as np
import pytest

from kernels import backend
from kernels.backend import BackendError, array_namespace, get_xp, gpu_available, is_cupy, to_numpy


def test_get_xp_numpy():
    assert get_xp("numpy") is np


def test_get_xp_auto_without_gpu_is_numpy():
    if gpu_available():
        assert is_cupy(get_xp("auto"))
    else:
        assert get_xp("auto") is np
    assert get_xp() is get_xp("auto")


@pytest.mark.skipif(gpu_available(), reason="a usable GPU is present")
def test_get_xp_cupy_without_gpu_raises():
    with pytest.raises(BackendError, match="backend='cupy' requested but no usable CUDA GPU/CuPy"):
        get_xp("cupy")
    assert issubclass(BackendError, RuntimeError)


def test_get_xp_bogus_raises_naming_value_and_choices():
    with pytest.raises(ValueError, match=r"'bogus'.*'auto', 'numpy', 'cupy'"):
        get_xp("bogus")


def test_gpu_available_is_cached_bool():
    assert isinstance(gpu_available(), bool)
    assert backend.gpu_available.cache_info().currsize == 1


def test_array_namespace_numpy_and_scalars():
    a = np.zeros(3)
    assert array_namespace(a) is np
    assert array_namespace(a, 1, 2.0, np.uint64(3)) is np
    assert array_namespace() is np


def test_is_cupy_and_to_numpy():
    assert not is_cupy(np)
    a = np.arange(4)
    assert to_numpy(a) is a
    assert to_numpy([1, 2]).tolist() == [1, 2]


@pytest.mark.gpu
@pytest.mark.skipif(not gpu_available(), reason="needs a CUDA GPU with CuPy")
def test_cupy_namespace_and_mixing():
    cp = pytest.importorskip("cupy")
    assert get_xp("cupy") is cp and is_cupy(cp)
    c = cp.arange(3)
    assert array_namespace(c) is cp
    assert to_numpy(c).tolist() == [0, 1, 2]
    with pytest.raises(TypeError, match="Mixed array types"):
        array_namespace(c, np.arange(3))
