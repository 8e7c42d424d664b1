"""Triton kernels and their launchers (no autograd here; see ``gradkit_diffbreak.ops``).

Importing this package imports triton: only ``ops`` does so, lazily, when a kernel is dispatched.
"""
