"""gradkit-streambp: StreamBP, exact memory-efficient backpropagation for long-sequence LLM training.

Luo, Li, Zhao, Li, "StreamBP: Memory-Efficient Exact Backpropagation for Long Sequence Training
of LLMs", NeurIPS 2025, https://arxiv.org/abs/2506.03077
"""

from gradkit_streambp.adapters import SUPPORTED_FAMILIES, DecoderAdapter, UnsupportedModelError, get_adapter
from gradkit_streambp.config import StreamBPConfig
from gradkit_streambp.engine import StreamStats, chunked_token_logprobs, stream_backward
from gradkit_streambp.objectives import StreamObjective
from gradkit_streambp.transform import StreamBP

__all__ = [
    "SUPPORTED_FAMILIES",
    "DecoderAdapter",
    "StreamBP",
    "StreamBPConfig",
    "StreamObjective",
    "StreamStats",
    "UnsupportedModelError",
    "chunked_token_logprobs",
    "get_adapter",
    "stream_backward",
]
