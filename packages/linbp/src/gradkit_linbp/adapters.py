"""Residual-block adapters: how LinBP splits a block into skip, branch and post-add activation.

A block ``out = post(skip(x) + branch(x))`` is run by LinBP as
``post(skip(x) + branch_linbp(x, branch))``: the branch's ReLUs are linearised in backward and its
input gradient is re-normalised per example (see :mod:`gradkit_linbp.functional`); the post-add ReLU
stays a true ReLU (as in the paper). Built-in adapters cover torchvision-style ``BasicBlock`` and
``Bottleneck`` (attributes ``conv1, bn1, conv2, bn2[, conv3, bn3], relu, downsample``; the single
``self.relu`` module may be shared between branch and post-add ReLU). Register adapters for other
block classes with :func:`register_block_adapter`. Whatever the adapter, LinBP checks on the first
forward that the adapted block returns bitwise the same output as the block's own ``forward``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

__all__ = ["BlockAdapter", "register_block_adapter", "find_adapter", "ADAPTERS"]

Act = Callable[[torch.Tensor], torch.Tensor]


@dataclass(frozen=True)
class BlockAdapter:
    """How to run one residual block class under LinBP.

    Attributes:
        name: a label for messages.
        matches: ``matches(block) -> bool``.
        skip: ``skip(block, x)``: the shortcut path (identity or downsample).
        branch: ``branch(block, x, act)``: the residual branch, calling ``act`` for every ReLU that
            LinBP may linearise.
        post: ``post(block, y)``: what follows the addition (the post-add ReLU, kept nonlinear).
        chain: the branch is a chain (every path from ``x`` passes through its last ``act`` call);
            lets the backward share the VJP after the last ReLU between linear and true gradients.
    """

    name: str
    matches: Callable[[nn.Module], bool]
    skip: Callable[[nn.Module, torch.Tensor], torch.Tensor]
    branch: Callable[[nn.Module, torch.Tensor, Act], torch.Tensor]
    post: Callable[[nn.Module, torch.Tensor], torch.Tensor]
    chain: bool = False


_BASIC = {"conv1", "bn1", "conv2", "bn2", "relu", "downsample"}
_BOTTLENECK = _BASIC | {"conv3", "bn3"}


def _children(block: nn.Module) -> set[str]:
    names = set(block._modules)  # includes entries set to None (torchvision's downsample=None)
    return names


def _is_tv(block: nn.Module, required: set[str]) -> bool:
    names = _children(block)
    needed = required - {"downsample"}
    return needed <= names and names <= required and isinstance(block._modules.get("relu"), nn.ReLU)


def _skip(block: nn.Module, x: torch.Tensor) -> torch.Tensor:
    ds = getattr(block, "downsample", None)
    return x if ds is None else ds(x)


def _post(block: nn.Module, y: torch.Tensor) -> torch.Tensor:
    return block.relu(y)


def _basic_branch(b: nn.Module, x: torch.Tensor, act: Act) -> torch.Tensor:
    return b.bn2(b.conv2(act(b.bn1(b.conv1(x)))))


def _bottleneck_branch(b: nn.Module, x: torch.Tensor, act: Act) -> torch.Tensor:
    return b.bn3(b.conv3(act(b.bn2(b.conv2(act(b.bn1(b.conv1(x))))))))


ADAPTERS: list[BlockAdapter] = [
    BlockAdapter("torchvision-bottleneck", lambda m: _is_tv(m, _BOTTLENECK) and "conv3" in m._modules,
                 _skip, _bottleneck_branch, _post, chain=True),
    BlockAdapter("torchvision-basicblock", lambda m: _is_tv(m, _BASIC), _skip, _basic_branch, _post, chain=True),
]


def register_block_adapter(adapter: BlockAdapter) -> None:
    """Add ``adapter``; it is tried before the built-in ones."""
    from gradkit.errors import ArgumentTypeError

    if not isinstance(adapter, BlockAdapter):
        raise ArgumentTypeError(f"register_block_adapter: `adapter` must be a BlockAdapter, got {type(adapter).__name__}")
    ADAPTERS.insert(0, adapter)


def find_adapter(module: nn.Module) -> BlockAdapter | None:
    """The first adapter that matches ``module``, or ``None``."""
    for a in ADAPTERS:
        if a.matches(module):
            return a
    return None
