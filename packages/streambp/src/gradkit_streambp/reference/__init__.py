"""Plain-PyTorch references: the CPU path and the test oracle for every kernel."""

from gradkit_streambp.reference.prefix_attention import (
    prefix_attention_bwd_ref,
    prefix_attention_fwd_ref,
)
from gradkit_streambp.reference.weighted_ce import token_logprobs_ref, weighted_ce_bwd_ref

__all__ = [
    "prefix_attention_bwd_ref",
    "prefix_attention_fwd_ref",
    "token_logprobs_ref",
    "weighted_ce_bwd_ref",
]
