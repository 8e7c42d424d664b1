"""Resubmission-aware evaluation of a stochastic (purified) classifier.

One purification gives a random label: ``p_c(x)`` is the chance it is ``c``. Three protocols:

- **single** (one purification): correct w.p. ``p_y``; an attacker who may resubmit ``k`` times
  succeeds w.p. ``1 - p_y^k`` (:meth:`EvalRecord.resubmission_accuracy`), so single-purification
  robustness is not a property of the input.
- **any-of-n / all-correct**: the input counts as robust only if all ``n`` copies are correct.
- **majority vote (MV)** over ``n`` copies: the most frequent label, ties broken explicitly
  (``"lowest"`` label by default, or ``"random"``). MV concentrates on ``argmax_c p_c``:
  ``P(MV != argmax) <= (K - 1) exp(-n gap^2 / 2)`` (:func:`mv_error_bound`).

Accuracies come with Wilson score intervals over the evaluated inputs.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from statistics import NormalDist
from typing import Any

import torch
from gradkit.errors import ConfigError

__all__ = ["EvalRecord", "evaluate", "majority_vote", "wilson_interval", "mv_error_bound", "PROTOCOLS", "TIE_RULES"]

PROTOCOLS = ("single", "majority_vote")
TIE_RULES = ("lowest", "random")


def wilson_interval(successes: int, trials: int, confidence: float = 0.95) -> tuple[float, float]:
    """Wilson score interval for a binomial proportion."""
    if trials <= 0:
        return (0.0, 1.0)
    if not 0 < confidence < 1:
        raise ConfigError(f"confidence={confidence} must be in (0, 1)")
    z = NormalDist().inv_cdf(0.5 + confidence / 2)
    p = successes / trials
    den = 1 + z * z / trials
    centre = (p + z * z / (2 * trials)) / den
    half = z * math.sqrt(p * (1 - p) / trials + z * z / (4 * trials * trials)) / den
    return (max(0.0, centre - half), min(1.0, centre + half))


def mv_error_bound(n: int, gap: float, num_classes: int) -> float:
    """Hoeffding bound on ``P(MV over n copies != argmax_c p_c)`` given the top-two gap."""
    return min(1.0, (num_classes - 1) * math.exp(-n * gap * gap / 2))


def majority_vote(
    labels: torch.Tensor, num_classes: int, *, tie: str = "lowest", generator: torch.Generator | None = None
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Majority vote over the copies axis of ``labels (B, n)``: ``(mv_label, tied, counts)``.

    ``tie="lowest"``: the smallest tied label; ``"random"``: a uniformly random tied label.
    """
    if tie not in TIE_RULES:
        raise ConfigError(f"tie={tie!r} is invalid; use one of {list(TIE_RULES)}")
    counts = torch.zeros(labels.shape[0], num_classes, dtype=torch.long, device=labels.device)
    counts.scatter_add_(1, labels.long(), torch.ones_like(labels, dtype=torch.long))
    top = counts.max(1, keepdim=True).values
    is_top = counts == top
    tied = is_top.sum(1) > 1
    if tie == "lowest":
        mv = is_top.long().argmax(1)  # first maximal index
    else:
        r = torch.rand(counts.shape, generator=generator, device="cpu").to(counts.device)
        mv = torch.where(is_top, r, torch.full_like(r, -1.0)).argmax(1)
    return mv, tied, counts


@dataclass
class EvalRecord:
    """Per-copy labels of ``n`` purifications per input and the protocol outcomes derived from them.

    Attributes:
        labels: ``(B, n)`` predicted label of every purified copy.
        y: ``(B,)`` true labels (or targets when ``targeted``).
        num_classes: ``K``.
        mv_label, mv_tied, counts: majority vote, whether it was a tie, vote counts ``(B, K)``.
        targeted: whether ``y`` holds attack targets.
        tie: the tie rule used.
    """

    labels: torch.Tensor
    y: torch.Tensor
    num_classes: int
    mv_label: torch.Tensor
    mv_tied: torch.Tensor
    counts: torch.Tensor
    targeted: bool = False
    tie: str = "lowest"

    @property
    def n(self) -> int:
        return int(self.labels.shape[1])

    @property
    def correct(self) -> torch.Tensor:
        """``(B, n)``: copy classified as the true label (for targeted records: as the target)."""
        return self.labels.eq(self.y.view(-1, 1))

    def per_input_accuracy(self) -> torch.Tensor:
        """Fraction of copies correct per input: the estimate of ``p_y(x)``."""
        return self.correct.float().mean(1)

    def single_accuracy(self) -> float:
        """Chance one purification classifies correctly, averaged over inputs."""
        return float(self.per_input_accuracy().mean())

    def mv_accuracy(self) -> float:
        return float(self.mv_label.eq(self.y).float().mean())

    def all_correct_accuracy(self) -> float:
        """Fraction of inputs whose ``n`` copies are all correct (robust to ``n`` resubmissions)."""
        return float(self.correct.all(1).float().mean())

    def resubmission_accuracy(self, k: int) -> float:
        """Unbiased estimate of ``P(k fresh purifications all correct)``, averaged over inputs.

        Per input with ``c`` of ``n`` copies correct: ``C(c, k) / C(n, k)`` (``k <= n``).
        """
        if not 1 <= k <= self.n:
            raise ConfigError(f"k={k} must be in [1, n={self.n}]")
        c = self.correct.sum(1).double()
        est = torch.ones_like(c)
        for i in range(k):
            est = est * ((c - i).clamp_min(0) / (self.n - i))
        return float(est.mean())

    def success(self, protocol: str) -> torch.Tensor:
        """Per-input attack success: ``single`` -> any copy fooled; ``majority_vote`` -> MV fooled."""
        if protocol == "single":
            return self.correct.any(1) if self.targeted else (~self.correct).any(1)
        if protocol == "majority_vote":
            return self.mv_label.eq(self.y) if self.targeted else self.mv_label.ne(self.y)
        raise ConfigError(f"protocol={protocol!r} is invalid; use one of {list(PROTOCOLS)}")

    def summary(self, confidence: float = 0.95) -> dict[str, Any]:
        b = int(self.y.shape[0])
        mv_k = int(self.mv_label.eq(self.y).sum())
        all_k = int(self.correct.all(1).sum())
        single_k = int(self.correct.sum())
        return {
            "inputs": b,
            "copies": self.n,
            "single_acc": self.single_accuracy(),
            "single_ci": wilson_interval(single_k, b * self.n, confidence),
            "mv_acc": self.mv_accuracy(),
            "mv_ci": wilson_interval(mv_k, b, confidence),
            "all_correct_acc": self.all_correct_accuracy(),
            "all_correct_ci": wilson_interval(all_k, b, confidence),
            "mv_ties": int(self.mv_tied.sum()),
            "tie_rule": self.tie,
        }


@torch.no_grad()
def evaluate(
    model: Any,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    n: int = 32,
    max_batch: int = 256,
    targeted: bool = False,
    tie: str = "lowest",
    generator: torch.Generator | None = None,
) -> EvalRecord:
    """Purify every input ``n`` times, classify each copy, and build an :class:`EvalRecord`.

    ``model`` is a :class:`~gradkit_diffbreak.model.PurifiedClassifier` (anything with
    ``logits_per_copy(x, copies=n) -> (B, n, K)``). Inputs are processed in chunks of about
    ``max_batch`` purified copies.
    """
    if not isinstance(n, int) or n < 1:
        raise ConfigError(f"n={n!r} must be a positive integer")
    if y.shape[:1] != x.shape[:1]:
        raise ConfigError(f"y must have one label per input ({x.shape[0]}), got shape {tuple(y.shape)}")
    per = max(1, max_batch // n)
    labels = []
    k = 0
    for i in range(0, x.shape[0], per):
        logits = model.logits_per_copy(x[i : i + per], copies=n)
        k = logits.shape[-1]
        labels.append(logits.argmax(-1))
    lab = torch.cat(labels) if labels else torch.zeros(0, n, dtype=torch.long)
    mv, tied, counts = majority_vote(lab, k, tie=tie, generator=generator)
    return EvalRecord(labels=lab, y=y.to(lab.device), num_classes=k, mv_label=mv, mv_tied=tied, counts=counts,
                      targeted=targeted, tie=tie)
