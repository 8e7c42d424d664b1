"""Iterative processes with a replayable noise tape.

A purification run is a chain ``s_{k+1} = F_k(s_k, guide, tape)``, ``k = 0..n-1``: the forward noising
to ``t*`` is step 0 (per repeat), the reverse steps follow. Every random number a step uses comes
from the :class:`NoiseTape` by ``(step, stream)``, so calling ``F_k`` again (in backward) reproduces
the forward exactly: that is what makes the per-step recompute of
:mod:`gradkit_diffbreak.exact` the gradient of the chain that was actually run.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

__all__ = ["NoiseTape", "IterativeProcess"]

_MASK = (1 << 63) - 1


class NoiseTape:
    """Counter-based noise: ``tape.randn(shape, step=k, stream=s)`` is a pure function of ``(seed, k, s)``.

    Each draw seeds a fresh ``torch.Generator`` from a mix of the base seed and the counters, so
    nothing is stored and backward regenerates exactly the forward's numbers (on the same device and
    dtype). ``stream`` separates independent uses inside one step (0: forward noising, 1: step noise,
    2: guidance noise).

    Args:
        seed: base seed (a fresh one per purification call gives fresh randomness; a fixed one gives
            the "fixed randomness" setting).
    """

    def __init__(self, seed: int) -> None:
        self.seed = int(seed) & _MASK

    def _seed_for(self, step: int, stream: int) -> int:
        h = (self.seed * 6364136223846793005 + 1442695040888963407) & _MASK
        h ^= (step + 1) * 0x9E3779B97F4A7C15
        h = (h * 0xBF58476D1CE4E5B9) & _MASK
        h ^= (stream + 1) * 0x94D049BB133111EB
        h = (h * 0x94D049BB133111EB + step) & _MASK
        return h

    def randn(
        self, shape: Sequence[int], *, step: int, stream: int, device: torch.device | str, dtype: torch.dtype
    ) -> torch.Tensor:
        gen = torch.Generator(device=device)
        gen.manual_seed(self._seed_for(step, stream))
        return torch.randn(tuple(shape), generator=gen, device=device, dtype=dtype)

    def __repr__(self) -> str:
        return f"NoiseTape(seed={self.seed})"


class IterativeProcess:
    """A chain of differentiable maps ``s_{k+1} = step(k, s_k, guide, tape)``.

    Subclasses implement :meth:`num_steps` and :meth:`step`. ``step`` must be a deterministic function
    of its arguments (all randomness from ``tape``), differentiable in ``state`` and ``guide``.
    ``uses_guide`` tells the exact-gradient function whether to differentiate w.r.t. ``guide``.
    """

    uses_guide: bool = False

    def num_steps(self) -> int:
        raise NotImplementedError

    def step(self, k: int, state: torch.Tensor, guide: torch.Tensor | None, tape: NoiseTape) -> torch.Tensor:
        raise NotImplementedError

    def run(self, state: torch.Tensor, guide: torch.Tensor | None, tape: NoiseTape) -> torch.Tensor:
        """All steps in order, with whatever grad mode is active (the full-graph path when grad is on)."""
        for k in range(self.num_steps()):
            state = self.step(k, state, guide, tape)
        return state
