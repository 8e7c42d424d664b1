"""gradkit-diffbreak: DiffBreak (Kassis, Hengartner, Yu; arXiv 2411.16598) for gradkit.

Exact, memory-flat gradients through diffusion-based purification (per-step recompute with a
replayed noise tape), resubmission-aware evaluation (single purification vs majority vote, with
confidence intervals), and PGD-EOT through ``gradkit.attack``.
"""

from .attacks import pgd_eot
from .config import DiffBreakConfig
from .evaluation import EvalRecord, evaluate, majority_vote, mv_error_bound, wilson_interval
from .exact import BACKWARD_RULES, ExactPurifyFunction, exact_purify, purify_with_rule
from .model import PurifiedClassifier
from .process import IterativeProcess, NoiseTape
from .purifiers import DDPMPurifier, GDMPGuidance, Purifier, VPSDEPurifier, ssim
from .transform import DiffBreak, margin_loss

__all__ = [
    "BACKWARD_RULES",
    "DDPMPurifier",
    "DiffBreak",
    "DiffBreakConfig",
    "EvalRecord",
    "ExactPurifyFunction",
    "GDMPGuidance",
    "IterativeProcess",
    "NoiseTape",
    "PurifiedClassifier",
    "Purifier",
    "VPSDEPurifier",
    "evaluate",
    "exact_purify",
    "majority_vote",
    "margin_loss",
    "mv_error_bound",
    "pgd_eot",
    "purify_with_rule",
    "ssim",
    "wilson_interval",
]
