"""The ``"streambp"`` transform: a loop-level switch (it modifies no module)."""

from __future__ import annotations

from typing import Any

import torch
from gradkit.transforms import GradientTransform, TransformHandle

from gradkit_streambp.config import StreamBPConfig

__all__ = ["StreamBP"]


class StreamBP(GradientTransform):
    """StreamBP: exact, memory-efficient backpropagation for long sequences.

    Luo et al., "StreamBP: Memory-Efficient Exact Backpropagation for Long Sequence Training of
    LLMs", NeurIPS 2025, https://arxiv.org/abs/2506.03077

    Changes how gradients are computed, not what they are: ``gradkit.train(...,
    transforms=["streambp"])`` replaces each micro-batch's forward + ``backward()`` by a
    sequence-chunked computation (see :func:`gradkit_streambp.stream_backward`) whose gradients
    equal plain autograd's up to floating-point summation order. Attaching modifies nothing.

    Args:
        model: optional, for the context-manager form.
        layer_chunk: query chunk for the decoder layers (``"auto"`` = max(1024, ceil(T/3))).
        head_chunk: sequence chunk for the LM head and loss (default 512).
        grad_accum_dtype: ``"float32"`` or ``"param"``.
        fallback: warn and use plain autograd on unsupported models/objectives (else raise).

    Examples::

        >>> import gradkit, gradkit.objectives as O
        >>> gradkit.train(model, batches, objective=O.CausalLMSFT(), steps=2,
        ...               transforms=[("streambp", {"layer_chunk": 256, "head_chunk": 128})])
    """

    name = "streambp"

    def __init__(self, model: torch.nn.Module | None = None, *, layer_chunk: int | str = "auto", head_chunk: int = 512,
                 grad_accum_dtype: str = "float32", fallback: bool = True) -> None:
        super().__init__(model, StreamBPConfig(layer_chunk=layer_chunk, head_chunk=head_chunk,
                                               grad_accum_dtype=grad_accum_dtype, fallback=fallback))

    def _attach(self, module: torch.nn.Module, handle: TransformHandle) -> None:
        from gradkit_streambp.adapters import UnsupportedModelError, get_adapter

        if not self.config.fallback:
            get_adapter(module)  # raise early
        else:
            try:
                get_adapter(module)
            except UnsupportedModelError:
                pass  # the loop warns and falls back

    def forward_backward(self, model: torch.nn.Module, batch: dict, objective: Any, **kw: Any) -> torch.Tensor:
        """``stream_backward`` with this transform's chunk sizes."""
        from gradkit_streambp.engine import stream_backward

        return stream_backward(model, batch, objective, layer_chunk=self.config.layer_chunk,
                               head_chunk=self.config.head_chunk, grad_accum_dtype=self.accum_dtype, **kw)

    @property
    def accum_dtype(self) -> torch.dtype | None:
        return torch.float32 if self.config.grad_accum_dtype == "float32" else None
