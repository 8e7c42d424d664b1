"""Triton kernels and their launchers (no autograd, no nn). Import only through ``ops/``."""
