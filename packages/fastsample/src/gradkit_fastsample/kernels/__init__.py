"""Triton kernels and their launchers (imported lazily by :mod:`gradkit_fastsample.ops`)."""
