"""Plain-PyTorch references: the CPU path and the test oracles."""

from .lif import (
    RESET_MODES,
    lif_bptt_reference,
    lif_rate_bwd_reference,
    lif_spike_pass_reference,
    reset_mode_id,
    spike_fn,
)

__all__ = [
    "RESET_MODES",
    "lif_bptt_reference",
    "lif_rate_bwd_reference",
    "lif_spike_pass_reference",
    "reset_mode_id",
    "spike_fn",
]
