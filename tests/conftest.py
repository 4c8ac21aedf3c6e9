"""Shared pytest setup: markers and hypothesis profiles."""

from __future__ import annotations

import os

from hypothesis import HealthCheck, settings


def pytest_configure(config):
    config.addinivalue_line("markers", "gpu: needs a CUDA GPU with CuPy (skipped without one)")
    config.addinivalue_line("markers", "slow: long hypothesis suites")


# "default": quick enough for every change; "thorough": HYPOTHESIS_PROFILE=thorough.
settings.register_profile("default", deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.register_profile(
    "thorough", deadline=None, max_examples=1000, suppress_health_check=[HealthCheck.too_slow]
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "default"))
