"""Hydra-driven parameter sweeps over the batched compaction kernels.

``sweep`` owns configuration (Hydra), expansion of a config into kernel params with a
zone axis, running, logging and results (xarray/netCDF). It imports ``kernels``;
``kernels`` never imports ``sweep``. Run it as ``python -m sweep``.
"""
