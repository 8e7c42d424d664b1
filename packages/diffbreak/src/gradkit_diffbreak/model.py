"""``PurifiedClassifier``: diffusion purification + classifier as one differentiable ``nn.Module``."""

from __future__ import annotations

from typing import Any

import torch
from gradkit.errors import ConfigError
from torch import nn

from .exact import BACKWARD_RULES, OFFLOAD, purify_with_rule
from .ops.eot import broadcast_copies
from .process import NoiseTape
from .purifiers import Purifier

__all__ = ["PurifiedClassifier", "OUTPUTS"]

OUTPUTS = ("copies", "mean_probs", "vote")


class PurifiedClassifier(nn.Module):
    """Diffusion-based purification (DBP) in front of a classifier, with a selectable gradient rule.

    After "DiffBreak: Is Diffusion-Based Purification Robust?" (Kassis, Hengartner, Yu;
    https://arxiv.org/abs/2411.16598). Each input is broadcast to ``copies`` independent purifications
    (fresh noise per call), each copy is classified.

    The gradient w.r.t. ``x`` is, by ``backward``:

    - ``"exact_recompute"`` (default): exact gradient of the chain actually run (same noise), with
      per-step recompute: memory of one step's graph plus the stored states (host when
      ``offload="cpu"``).
    - ``"full"``: plain autograd through all steps (the oracle; memory linear in the steps).
    - ``"bpda_identity"``: BPDA, purification treated as the identity in backward.
    - ``"blind"``: gradient of the bare classifier at ``x`` (forward still purified).

    Args:
        classifier: ``classifier(x) -> logits (N, K)`` for images in ``[0, 1]``.
        purifier: a :class:`~gradkit_diffbreak.purifiers.Purifier` (DDPM, VP-SDE, GDMP ...).
        copies: purifications per input (EOT copies in the batch dimension).
        backward: gradient rule (above).
        offload: where ``exact_recompute`` keeps the per-step states: ``"cpu"`` (host) or ``"none"``.
        output: ``"copies"`` -> logits ``(B, copies, K)``; ``"mean_probs"`` -> mean softmax over copies
            ``(B, K)`` (differentiable); ``"vote"`` -> vote frequencies ``(B, K)`` whose ``argmax`` is
            the majority vote with ties to the lowest label (no gradient).
        seed: seed of the generator drawing each call's noise-tape seed (``None``: torch's global RNG).
        deterministic: reuse one noise tape for every call ("fixed randomness"): the model becomes a
            deterministic function.

    Examples::

        >>> model = PurifiedClassifier(clf, DDPMPurifier(unet, sched, t_star=0.1, steps=10), copies=8)
        >>> logits = model(x)                      # (B, 8, K)
        >>> g, = torch.autograd.grad(logits.log_softmax(-1)[..., 0].sum(), x)
    """

    def __init__(
        self,
        classifier: nn.Module,
        purifier: Purifier,
        *,
        copies: int = 8,
        backward: str = "exact_recompute",
        offload: str = "cpu",
        output: str = "copies",
        seed: int | None = None,
        deterministic: bool = False,
    ) -> None:
        super().__init__()
        if not isinstance(purifier, Purifier):
            raise ConfigError(f"purifier must be a gradkit_diffbreak Purifier, got {type(purifier).__name__}")
        self.classifier = classifier
        self.purifier = purifier
        if isinstance(purifier.unet, nn.Module):
            self.unet = purifier.unet  # registered so .to()/.eval()/.parameters() cover it
        self.copies = copies
        self.backward = backward
        self.offload = offload
        self.output = output
        self.deterministic = bool(deterministic)
        self._gen = torch.Generator().manual_seed(int(seed)) if seed is not None else None
        self._fixed_seed = self._draw_seed() if self.deterministic else None

    # -- validated knobs ----------------------------------------------------------------------
    @property
    def copies(self) -> int:
        return self._copies

    @copies.setter
    def copies(self, v: int) -> None:
        if not isinstance(v, int) or isinstance(v, bool) or v < 1:
            raise ConfigError(f"copies={v!r} must be a positive integer")
        self._copies = v

    @property
    def backward(self) -> str:
        return self._backward

    @backward.setter
    def backward(self, v: str) -> None:
        if v not in BACKWARD_RULES:
            raise ConfigError(f"backward={v!r} is invalid; use one of {list(BACKWARD_RULES)}")
        self._backward = v

    @property
    def offload(self) -> str:
        return self._offload

    @offload.setter
    def offload(self, v: str) -> None:
        if v not in OFFLOAD:
            raise ConfigError(f"offload={v!r} is invalid; use one of {list(OFFLOAD)}")
        self._offload = v

    @property
    def output(self) -> str:
        return self._output

    @output.setter
    def output(self, v: str) -> None:
        if v not in OUTPUTS:
            raise ConfigError(f"output={v!r} is invalid; use one of {list(OUTPUTS)}")
        self._output = v

    # -- noise --------------------------------------------------------------------------------
    def _draw_seed(self) -> int:
        return int(torch.randint(0, 2**62, (1,), generator=self._gen).item())

    def new_tape(self) -> NoiseTape:
        """The noise tape for the next call (fresh unless ``deterministic``)."""
        return NoiseTape(self._fixed_seed if self._fixed_seed is not None else self._draw_seed())

    # -- computation --------------------------------------------------------------------------
    def purify(
        self, x: torch.Tensor, *, copies: int | None = None, backward: str | None = None, tape: NoiseTape | None = None
    ) -> torch.Tensor:
        """Purified images ``(B * copies, C, H, W)`` in ``[0, 1]`` (copies of input ``b`` are rows ``b*copies..``)."""
        self.purifier.check_images(x)
        n = self.copies if copies is None else copies
        rule = self.backward if backward is None else backward
        tape = self.new_tape() if tape is None else tape
        xb = broadcast_copies(x, n)
        u = xb * 2 - 1
        guide = u if self.purifier.uses_guide else None
        # "blind" differentiates the bare classifier (see logits_per_copy); here it degrades to BPDA
        s = purify_with_rule(self.purifier, u, guide, tape, backward="bpda_identity" if rule == "blind" else rule, offload=self.offload)
        return ((s.clamp(-1, 1) + 1) / 2)

    def logits_per_copy(
        self, x: torch.Tensor, *, copies: int | None = None, backward: str | None = None, tape: NoiseTape | None = None
    ) -> torch.Tensor:
        """Classifier logits of every purified copy: ``(B, copies, K)``."""
        n = self.copies if copies is None else copies
        rule = self.backward if backward is None else backward
        if rule == "blind":
            with torch.no_grad():
                xp = self.purify(x, copies=n, backward="full", tape=tape)
                real = self.classifier(xp)
            xb = broadcast_copies(x, n)
            bare = self.classifier(xb)
            logits = bare + (real - bare).detach()
        else:
            logits = self.classifier(self.purify(x, copies=n, backward=rule, tape=tape))
        return logits.view(x.shape[0], n, *logits.shape[1:])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        logits = self.logits_per_copy(x)
        if self.output == "copies":
            return logits
        if self.output == "mean_probs":
            return logits.softmax(-1).mean(1)
        k = logits.shape[-1]
        votes = torch.nn.functional.one_hot(logits.detach().argmax(-1), k).to(logits.dtype)
        return votes.mean(1)

    def extra_repr(self) -> str:
        return f"copies={self.copies}, backward={self.backward!r}, offload={self.offload!r}, output={self.output!r}"

    def __getstate__(self) -> dict[str, Any]:  # deepcopy / pickle support for the generator
        state = self.__dict__.copy()
        gen = state.pop("_gen", None)
        state["_gen_state"] = None if gen is None else gen.get_state()
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        gs = state.pop("_gen_state", None)
        self.__dict__.update(state)
        self._gen = None if gs is None else torch.Generator().set_state(gs)
