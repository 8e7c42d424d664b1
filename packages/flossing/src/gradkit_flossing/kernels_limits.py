"""Tile limits of the Triton kernels (kept outside ``kernels/`` so that reading them imports no triton)."""

MAX_N = 256  # rows of the MGS-QR tile
MAX_K = 64  # columns of the MGS-QR tile
