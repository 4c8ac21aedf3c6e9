"""Shared pytest setup: markers and hypothesis profiles."""

from __future__ import annotations

import ctypes.util
import os

import pytest
from hypothesis import HealthCheck, settings

# sweep/cuda_tick.py (the compiled tick engine on a GPU, numba.cuda): with no CUDA driver
# on this machine, its tests run the same kernels on Numba's CUDA simulator. Numba reads
# the switch when numba.cuda is first imported, so it is set here, before any test module
# is collected; NUMBA_ENABLE_CUDASIM set by hand (0 or 1) wins.
if "NUMBA_ENABLE_CUDASIM" not in os.environ and ctypes.util.find_library("cuda") is None:
    os.environ["NUMBA_ENABLE_CUDASIM"] = "1"


def pytest_configure(config):
    config.addinivalue_line("markers", "gpu: needs a CUDA GPU with CuPy (skipped without one)")
    config.addinivalue_line("markers", "slow: long hypothesis suites")


# "default": quick enough for every change; "thorough": HYPOTHESIS_PROFILE=thorough.
settings.register_profile("default", deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.register_profile(
    "thorough", deadline=None, max_examples=1000, suppress_health_check=[HealthCheck.too_slow]
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "default"))


@pytest.fixture(scope="session")
def ray_local():
    """A real local Ray for the session (started once: it takes about 4 s on 2 cores)."""
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    import ray

    started = not ray.is_initialized()
    if started:
        ray.init(
            num_cpus=2,
            include_dashboard=False,
            log_to_driver=False,
            logging_level="ERROR",
            object_store_memory=100 * 1024 * 1024,
        )
    yield ray
    if started:
        ray.shutdown()
