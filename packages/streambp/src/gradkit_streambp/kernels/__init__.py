"""Triton kernels and their launchers (no autograd here). Importing this package imports triton."""
