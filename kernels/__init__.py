"""Batched array kernels for simulating Linux memory compaction.

Pure array code over NumPy or CuPy with the zone axis first. None of these modules
import ``sweep``, Hydra, OmegaConf, Ray, xarray or logging handlers: they take arrays
and return arrays, so they can be run and timed on a bare GPU image.
"""
