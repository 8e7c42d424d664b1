from __future__ import annotations

from typing import Any

import torch
from gradkit.transforms import GradientTransform, TransformHandle

from .config import ScaleConfig
from .ops import grad_scale


class GradScale(GradientTransform):
    """Scale the gradient flowing back into ``module``'s output by ``factor`` (forward unchanged).

    Examples::

        >>> model = torch.nn.Linear(3, 2)
        >>> with GradScale(model, factor=0.5):
        ...     model(torch.ones(1, 3)).sum().backward()
    """

    name = "template-scale"

    def __init__(self, module: torch.nn.Module | None = None, *, factor: float = 0.5) -> None:
        super().__init__(module, ScaleConfig(factor=factor))

    def _attach(self, module: torch.nn.Module, handle: TransformHandle) -> None:
        factor = self.config.factor

        def hook(mod: torch.nn.Module, args: Any, out: Any) -> Any:
            return grad_scale(out, factor) if isinstance(out, torch.Tensor) else out

        handle.add_torch_handle(module.register_forward_hook(hook))
