"""Triton kernels and their launchers only (imported lazily: importing triton is the caller's choice)."""
