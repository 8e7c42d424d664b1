"""ILA (Intermediate Level Attack, Huang et al., ICCV 2019) as the second stage after (LinBP-)I-FGSM.

Stage 2 restarts from the clean image and maximises, with plain backpropagation, the projection of
the feature change at a layer ``h`` onto the change produced by the stage-1 example ``x'``:
``L(x) = sum_n < h(x)[n] - h(x0)[n], guide[n] >`` with ``guide = h(x') - h(x0)``.
It runs inside ``gradkit.attack``: the :class:`ILA` transform, when active, provides the input
gradient (``gradkit_input_grad``) after computing the guide at attack start.
"""

from __future__ import annotations

from typing import Any

import torch
from gradkit.errors import ConfigError
from gradkit.transforms import GradientTransform, TransformHandle
from torch import nn

from .config import ILAConfig

__all__ = ["ILA"]


class _Stop(Exception):
    pass


class ILA(GradientTransform):
    """ILA projection loss at module ``layer``; set :attr:`reference` to the stage-1 examples.

    Args:
        model: optional module (for ``with ILA(model, layer=..., reference=x1):``).
        layer: qualified module name whose output is the intermediate feature ``h``.
        normalize_guide: l2-normalise the guide per example (TA-Bench's variant).
        reference: the stage-1 adversarial examples ``x'`` (same shape as the clean batch).
    """

    name = "ila"

    def __init__(
        self,
        model: nn.Module | None = None,
        *,
        layer: str = "",
        normalize_guide: bool = False,
        reference: torch.Tensor | None = None,
        config: ILAConfig | None = None,
    ) -> None:
        super().__init__(model, config or ILAConfig(layer=layer, normalize_guide=normalize_guide))
        self.reference = reference
        self._module: nn.Module | None = None

    def _attach(self, module: nn.Module, handle: TransformHandle) -> None:
        names = dict(module.named_modules())
        layer = self.config.layer
        if layer not in names or layer == "":
            some = [n for n in names if n][:12]
            raise ConfigError(f"ILA: `layer`={layer!r} is not a module of the model; e.g. {some}")
        self._module = names[layer]
        self._root = module
        handle.add(lambda: setattr(self, "_module", None))

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """``h(x)``: runs the model up to ``layer`` (the rest of the forward is skipped)."""
        if self._module is None:
            raise ConfigError("ILA: attach the transform to the model first (it is attached by gradkit.attack)")
        got: list[torch.Tensor] = []

        def grab(_m: nn.Module, _a: Any, out: torch.Tensor) -> None:
            got.append(out)
            raise _Stop

        h = self._module.register_forward_hook(grab)
        try:
            self._root(x)
        except _Stop:
            pass
        finally:
            h.remove()
        if not got:
            raise ConfigError(f"ILA: layer {self.config.layer!r} was not called by the model's forward")
        return got[0]

    # -- used by the plugin's attack hooks ------------------------------------------------------
    def start(self, x_clean: torch.Tensor) -> None:
        if self.reference is None or self.reference.shape != x_clean.shape:
            raise ConfigError(
                "ILA: set `reference` to the stage-1 adversarial examples, shaped like the clean batch "
                f"{tuple(x_clean.shape)}; use gradkit_linbp.ila(...) or linbp_attack(..., ila_layer=...)"
            )
        with torch.no_grad():
            self._h0 = self.features(x_clean).detach()
            guide = self.features(self.reference.to(x_clean)).detach() - self._h0
            if self.config.normalize_guide:
                guide = guide / guide.flatten(1).norm(dim=1).clamp_min(1e-12).view(-1, *([1] * (guide.dim() - 1)))
            self._guide = guide

    def loss(self, x: torch.Tensor) -> torch.Tensor:
        """Per-example projection loss ``<h(x) - h(x0), guide>``."""
        return ((self.features(x) - self._h0) * self._guide).flatten(1).sum(dim=1)
