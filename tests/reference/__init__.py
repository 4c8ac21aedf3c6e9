"""Slow per-zone references in the kernel's own control flow: the oracles for kernels/."""
