"""Ops that pick the Triton kernel or the plain-PyTorch reference per call
(``gradkit.kernels.use_triton``)."""

from gradkit_streambp.ops.prefix_attention import (
    PrefixAttentionFunction,
    prefix_attention,
    prefix_attention_bwd,
    prefix_attention_fwd,
)
from gradkit_streambp.ops.weighted_ce import TokenLogprobsFunction, token_logprobs, weighted_ce_bwd, weighted_ce_fwd

__all__ = [
    "PrefixAttentionFunction",
    "TokenLogprobsFunction",
    "prefix_attention",
    "prefix_attention_bwd",
    "prefix_attention_fwd",
    "token_logprobs",
    "weighted_ce_bwd",
    "weighted_ce_fwd",
]
