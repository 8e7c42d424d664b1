"""Frozen, JSON-round-tripping configuration of the ``"diffbreak"`` transform."""

from __future__ import annotations

from dataclasses import dataclass

from gradkit.config import Config, check_in
from gradkit.errors import ConfigError

from .exact import BACKWARD_RULES, OFFLOAD

LOSSES = ("attack", "ce", "margin")
STOPS = ("none", "single", "majority_vote")
OUTPUTS = ("copies", "mean_probs", "vote")


@dataclass(frozen=True)
class DiffBreakConfig(Config):
    """Hyperparameters of :class:`gradkit_diffbreak.DiffBreak` (the attack-loop transform).

    Attributes:
        backward: gradient rule through purification: ``exact_recompute`` (exact, flat memory),
            ``full`` (plain autograd), ``bpda_identity``, ``blind``.
        copies: purified copies per input for the gradient (EOT in the batch dimension);
            ``0`` keeps the model's own setting.
        eot_iters: gradient evaluations averaged per attack iteration (total samples
            ``eot_iters * copies``).
        loss: ``attack`` (the attack's ``loss_fn``, default cross-entropy), ``ce``, or ``margin``
            (CW margin, kappa = inf). The per-copy loss is averaged over copies.
        offload: where ``exact_recompute`` keeps the per-step states (``cpu`` or ``none``).
        output: the module's output while attached; ``vote`` (majority-vote frequencies) makes
            ``gradkit.attack``'s final success check a majority-vote check.
        stop: evaluate after every iteration and freeze an input at its first success under this
            protocol (``single``: any copy fooled; ``majority_vote``), or ``none``.
        eval_copies: purifications per input for that evaluation.
    """

    backward: str = "exact_recompute"
    copies: int = 0
    eot_iters: int = 1
    loss: str = "attack"
    offload: str = "cpu"
    output: str = "vote"
    stop: str = "none"
    eval_copies: int = 16

    def __post_init__(self) -> None:
        check_in("DiffBreak", "backward", self.backward, BACKWARD_RULES)
        check_in("DiffBreak", "loss", self.loss, LOSSES)
        check_in("DiffBreak", "offload", self.offload, OFFLOAD)
        check_in("DiffBreak", "output", self.output, OUTPUTS)
        check_in("DiffBreak", "stop", self.stop, STOPS)
        for name in ("copies", "eot_iters", "eval_copies"):
            v = getattr(self, name)
            lo = 0 if name == "copies" else 1
            if not isinstance(v, int) or isinstance(v, bool) or v < lo:
                raise ConfigError(f"DiffBreak: `{name}` must be an integer >= {lo}, got {v!r}")
