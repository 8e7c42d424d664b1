"""Triton kernels and their launchers (no autograd, no nn). Importing this module imports triton."""
