"""Training objectives shared by loops and plugins: causal-LM SFT, GRPO, DPO.

Every objective has the form ``loss = outer(S)`` with per-sequence sums
``S_b = sum_t token_loss(logp_{b,t})`` of a per-token term of the target log-probabilities. That
split is what lets a plugin (e.g. StreamBP) evaluate the loss and its gradient chunk by chunk along
the sequence, while ``objective(outputs, batch)`` on full logits is the plain-autograd oracle.

Positions follow Hugging Face's shift: the logits at position ``t`` predict ``labels[:, t + 1]``.
:func:`shift_labels` returns targets aligned with logits positions (``-100`` where nothing is
predicted, including the last position), and every per-token tensor in a batch (``old_logps``,
``ref_token_logps``) uses that alignment, shape ``[B, T]``.

Usage::

    ctx = objective.prepare(batch, normalizer=None)   # targets, masks, weights for this micro-batch
    logp = token_logps(logits[:, a:b], ctx.targets[:, a:b])
    contrib = ctx.token_loss(logp, slice(a, b))          # [B, b - a]
    loss = ctx.outer(sequence_sums)                      # scalar
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F

from .config import check_in, check_positive
from .errors import ArgumentTypeError, ConfigError

__all__ = [
    "IGNORE_INDEX",
    "shift_labels",
    "token_logps",
    "ObjectiveContext",
    "Objective",
    "CausalLMSFT",
    "GRPO",
    "DPO",
    "ClassificationCE",
]

IGNORE_INDEX = -100


def _logits_of(outputs: Any) -> torch.Tensor:
    logits = getattr(outputs, "logits", outputs)
    if isinstance(outputs, dict) and "logits" in outputs:
        logits = outputs["logits"]
    if not isinstance(logits, torch.Tensor):
        raise ArgumentTypeError(f"objective: model outputs must be a tensor or have `.logits`, got {type(outputs).__name__}")
    return logits


def labels_of(batch: Any) -> torch.Tensor:
    """``batch["labels"]``, or ``input_ids`` with padding (``attention_mask == 0``) set to -100."""
    if not isinstance(batch, dict) or "input_ids" not in batch:
        raise ArgumentTypeError("objective: `batch` must be a dict with `input_ids` (and optionally `labels`, `attention_mask`)")
    ids = batch["input_ids"]
    labels = batch.get("labels")
    if labels is None:
        labels = ids.clone()
        if batch.get("attention_mask") is not None:
            labels = labels.masked_fill(batch["attention_mask"] == 0, IGNORE_INDEX)
    if labels.shape != ids.shape:
        raise ConfigError(
            f"objective: `labels` has shape {tuple(labels.shape)} but `input_ids` has {tuple(ids.shape)}; "
            "labels must be the same shape as input_ids (use -100 to mask positions)"
        )
    return labels


def shift_labels(labels: torch.Tensor) -> torch.Tensor:
    """Targets aligned with logits positions: ``out[:, t] = labels[:, t + 1]``, ``out[:, -1] = -100``."""
    pad = torch.full_like(labels[:, :1], IGNORE_INDEX)
    return torch.cat([labels[:, 1:], pad], dim=1)


def token_logps(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """``log_softmax(logits)[target]`` per position, 0 where ``target == -100``. Shape ``[B, T]``.

    Half-precision logits are upcast to float32 (as Hugging Face does); float64 stays float64.
    """
    if logits.dtype in (torch.float16, torch.bfloat16):
        logits = logits.float()
    valid = targets != IGNORE_INDEX
    safe = targets.masked_fill(~valid, 0)
    logp = torch.log_softmax(logits, dim=-1).gather(-1, safe.unsqueeze(-1)).squeeze(-1)
    return logp * valid.to(logp.dtype)


@dataclass
class ObjectiveContext:
    """An objective bound to one micro-batch.

    Attributes:
        targets: ``[B, T]`` targets aligned with logits positions (-100 = ignored).
        mask: ``[B, T]`` bool, ``targets != -100``.
        linear: ``True`` when ``outer`` is a plain sum, so chunks need no first pass.
    """

    targets: torch.Tensor
    mask: torch.Tensor
    linear: bool
    _token: Callable[[torch.Tensor, slice], torch.Tensor]
    _outer: Callable[[torch.Tensor], torch.Tensor]

    def token_loss(self, logp: torch.Tensor, positions: slice = slice(None)) -> torch.Tensor:
        """Per-token loss contributions for positions ``positions`` given their log-probs ``logp``."""
        return self._token(logp, positions)

    def outer(self, sequence_sums: torch.Tensor) -> torch.Tensor:
        """The loss from the per-sequence sums of ``token_loss``."""
        return self._outer(sequence_sums)


class Objective:
    """Base class: subclasses implement :meth:`prepare` and :meth:`count`."""

    name = "objective"

    def count(self, batch: Any) -> float | None:
        """The quantity a global normaliser sums over micro-batches (and processes), or ``None``."""
        return None

    def prepare(self, batch: Any, normalizer: float | None = None) -> ObjectiveContext:
        raise NotImplementedError

    def __call__(self, outputs: Any, batch: Any, normalizer: float | None = None) -> torch.Tensor:
        logits = _logits_of(outputs)
        ctx = self.prepare(batch, normalizer)
        if logits.shape[:2] != ctx.targets.shape:
            raise ConfigError(
                f"{type(self).__name__}: logits have shape {tuple(logits.shape)} but labels {tuple(ctx.targets.shape)}; "
                "labels must match the model's sequence length"
            )
        logp = token_logps(logits, ctx.targets)
        return ctx.outer(ctx.token_loss(logp, slice(None)).sum(dim=1))


class CausalLMSFT(Objective):
    """Supervised fine-tuning: mean negative log-likelihood of the target tokens.

    Without a normaliser this equals Hugging Face's shifted-label mean over the micro-batch. With
    ``normalizer=N`` (the number of target tokens over all micro-batches of the step, and all
    processes) it is ``sum(-logp) / N``, so gradient accumulation gives exactly the big-batch mean.
    A micro-batch with no target token gives a zero loss (not NaN).
    """

    name = "sft"

    def count(self, batch: Any) -> float:
        return float((shift_labels(labels_of(batch)) != IGNORE_INDEX).sum())

    def prepare(self, batch: Any, normalizer: float | None = None) -> ObjectiveContext:
        targets = shift_labels(labels_of(batch))
        mask = targets != IGNORE_INDEX
        denom = float(normalizer) if normalizer is not None else float(mask.sum())
        scale = 1.0 / denom if denom > 0 else 0.0

        def token(logp: torch.Tensor, sl: slice) -> torch.Tensor:
            return -logp * mask[:, sl].to(logp.dtype) * scale

        return ObjectiveContext(targets, mask, True, token, lambda s: s.sum())


class GRPO(Objective):
    """Group Relative Policy Optimization loss (clipped ratio, optional KL to a reference).

    Batch keys: ``input_ids``, ``attention_mask``, ``labels`` (prompt positions -100), ``advantages``
    ``[B]``, optional ``old_logps`` ``[B, T]`` (default: the current log-probs, detached, i.e. ratio 1)
    and ``ref_token_logps`` ``[B, T]`` (required when ``beta > 0``), both aligned with logits positions.

    Normalisers (``loss_type``):
        ``"grpo"``: mean over sequences of the per-sequence token mean;
        ``"bnpo"``: sum over tokens / number of tokens (global with ``normalizer``);
        ``"dr_grpo"``: sum over tokens / (number of sequences * ``max_length``).
    """

    name = "grpo"

    def __init__(self, *, beta: float = 0.0, epsilon: float = 0.2, epsilon_high: float | None = None,
                 loss_type: str = "grpo", max_length: int | None = None) -> None:
        check_positive("GRPO", "beta", beta, allow_zero=True)
        check_positive("GRPO", "epsilon", epsilon)
        check_in("GRPO", "loss_type", loss_type, ("grpo", "bnpo", "dr_grpo"))
        if max_length is not None:
            check_positive("GRPO", "max_length", max_length)
        self.beta, self.epsilon = beta, epsilon
        self.epsilon_high = epsilon if epsilon_high is None else epsilon_high
        self.loss_type, self.max_length = loss_type, max_length

    def count(self, batch: Any) -> float:
        if self.loss_type == "bnpo":
            return float((shift_labels(labels_of(batch)) != IGNORE_INDEX).sum())
        return float(batch["input_ids"].shape[0])

    def prepare(self, batch: Any, normalizer: float | None = None) -> ObjectiveContext:
        targets = shift_labels(labels_of(batch))
        mask = targets != IGNORE_INDEX
        B, T = targets.shape
        adv = batch.get("advantages")
        if adv is None or adv.shape != (B,):
            raise ConfigError(f"GRPO: batch needs `advantages` of shape ({B},), got {None if adv is None else tuple(adv.shape)}")
        old = batch.get("old_logps")
        ref = batch.get("ref_token_logps")
        for key, val in (("old_logps", old), ("ref_token_logps", ref)):
            if val is not None and val.shape != (B, T):
                raise ConfigError(f"GRPO: `{key}` must have shape ({B}, {T}) aligned with logits positions, got {tuple(val.shape)}")
        if self.beta > 0 and ref is None:
            raise ConfigError("GRPO: beta > 0 needs `ref_token_logps` in the batch (reference model log-probs), or set beta=0")
        lengths = mask.sum(dim=1)
        mask_f = mask.to(torch.float64)
        if self.loss_type == "grpo":
            n_seq = float(normalizer) if normalizer is not None else float(B)
            w = mask_f / (lengths.clamp(min=1).unsqueeze(1) * n_seq)
        elif self.loss_type == "bnpo":
            denom = float(normalizer) if normalizer is not None else float(mask.sum())
            w = mask_f / (denom if denom > 0 else 1.0)
        else:
            n_seq = float(normalizer) if normalizer is not None else float(B)
            w = mask_f / (n_seq * float(self.max_length or T))
        lo, hi = 1.0 - self.epsilon, 1.0 + self.epsilon_high

        def token(logp: torch.Tensor, sl: slice) -> torch.Tensor:
            m = mask[:, sl]
            old_lp = logp.detach() if old is None else old[:, sl].to(logp.dtype)
            a = adv.to(logp.dtype).unsqueeze(1)
            ratio = torch.exp((logp - old_lp).masked_fill(~m, 0.0))
            per = -torch.minimum(ratio * a, ratio.clamp(lo, hi) * a)
            if self.beta > 0:
                d = (ref[:, sl].to(logp.dtype) - logp).masked_fill(~m, 0.0)
                per = per + self.beta * (torch.exp(d) - d - 1.0)
            return per * w[:, sl].to(logp.dtype)

        return ObjectiveContext(targets, mask, True, token, lambda s: s.sum())


class DPO(Objective):
    """Direct Preference Optimization (sigmoid loss) on sequence log-prob sums.

    The batch stacks the chosen sequences (first half of the rows) over the rejected ones (second
    half). Reference log-probs come from ``batch["ref_logps"]`` ``[2P]`` (precomputed sequence sums in
    the same order), or from ``ref_model`` (a frozen model run without gradients in :meth:`prepare`).
    ``loss = mean_p -logsigmoid(beta * ((pi_c - ref_c) - (pi_r - ref_r)))`` (with ``label_smoothing``
    the conservative-DPO mixture); with ``normalizer`` the mean is over that many pairs.
    """

    name = "dpo"

    def __init__(self, *, beta: float = 0.1, label_smoothing: float = 0.0, ref_model: torch.nn.Module | None = None) -> None:
        check_positive("DPO", "beta", beta)
        if not 0.0 <= label_smoothing < 0.5:
            raise ConfigError(f"DPO: `label_smoothing` must be in [0, 0.5), got {label_smoothing}")
        self.beta, self.label_smoothing, self.ref_model = beta, label_smoothing, ref_model

    def count(self, batch: Any) -> float:
        return float(batch["input_ids"].shape[0] // 2)

    @torch.no_grad()
    def reference_logps(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """Sequence log-prob sums of the reference model (``ref_model``) on ``batch``."""
        if self.ref_model is None:
            raise ConfigError("DPO: pass `ref_model=` or put precomputed `ref_logps` in the batch")
        targets = shift_labels(labels_of(batch))
        kwargs = {k: v for k, v in batch.items() if k in ("input_ids", "attention_mask", "position_ids")}
        logits = _logits_of(self.ref_model(**kwargs))
        return token_logps(logits, targets).sum(dim=1)

    def prepare(self, batch: Any, normalizer: float | None = None) -> ObjectiveContext:
        targets = shift_labels(labels_of(batch))
        mask = targets != IGNORE_INDEX
        n = targets.shape[0]
        if n % 2:
            raise ConfigError(f"DPO: the batch must stack chosen over rejected rows (an even count), got {n} rows")
        ref = batch.get("ref_logps")
        if ref is None:
            ref = self.reference_logps(batch)
        if ref.shape != (n,):
            raise ConfigError(f"DPO: `ref_logps` must have shape ({n},), got {tuple(ref.shape)}")
        pairs = float(normalizer) if normalizer is not None else float(n // 2)

        def token(logp: torch.Tensor, sl: slice) -> torch.Tensor:
            return logp * mask[:, sl].to(logp.dtype)

        def outer(s: torch.Tensor) -> torch.Tensor:
            r = ref.to(s.dtype)
            half = n // 2
            z = self.beta * ((s[:half] - r[:half]) - (s[half:] - r[half:]))
            ls = self.label_smoothing
            losses = -(1 - ls) * F.logsigmoid(z) - ls * F.logsigmoid(-z)
            return losses.sum() / pairs

        return ObjectiveContext(targets, mask, False, token, outer)


class ClassificationCE(Objective):
    """Cross-entropy for classifiers: batch ``(x, y)`` or ``{"x":..., "y":...}``; outputs are logits ``[B, C]``."""

    name = "ce"

    def __call__(self, outputs: Any, batch: Any, normalizer: float | None = None) -> torch.Tensor:
        logits = _logits_of(outputs)
        y = batch[1] if isinstance(batch, (tuple, list)) else batch["y"] if isinstance(batch, dict) else None
        if y is None:
            raise ArgumentTypeError("ClassificationCE: `batch` must be (x, y) or a dict with 'y'")
        return F.cross_entropy(logits, y)
