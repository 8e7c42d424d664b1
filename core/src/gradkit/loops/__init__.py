"""Thin, hook-driven loops: :func:`train` (on accelerate), :func:`sample` (diffusers), :func:`attack`."""

from .attack import AttackResult, attack
from .sample import sample
from .train import TrainConfig, reduce_gradients, train

__all__ = ["train", "TrainConfig", "reduce_gradients", "sample", "attack", "AttackResult"]
