"""``gradkit.attack``: iterative input-gradient attacks (I-FGSM, PGD, MI-FGSM; l_inf and l_2)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F

from ..config import check_in
from ..context import AttackState
from ..errors import ArgumentTypeError, ConfigError
from ..manager import get_plugin_manager
from ..transforms import resolve
from ._checks import need_int, need_number, need_tensor

__all__ = ["attack", "AttackResult", "METHODS", "NORMS", "project", "default_attack_step", "default_input_grad"]

METHODS = ("ifgsm", "pgd", "mifgsm")
NORMS = ("linf", "l2")


@dataclass
class AttackResult:
    """``x_adv`` (detached, in [0, 1]), per-example ``success`` on the attacked model, loss per iteration."""

    x_adv: torch.Tensor
    success: torch.Tensor
    losses: list[float] = field(default_factory=list)

    @property
    def success_rate(self) -> float:
        return float(self.success.float().mean())


def _per_example_norm(v: torch.Tensor, p: float) -> torch.Tensor:
    return v.flatten(1).norm(p=p, dim=1).view(-1, *([1] * (v.dim() - 1)))


def project(x_adv: torch.Tensor, x_clean: torch.Tensor, eps: float, norm: str) -> torch.Tensor:
    """Project ``x_adv`` onto the eps-ball (l_inf or l_2) around ``x_clean`` and clamp to [0, 1]."""
    delta = x_adv - x_clean
    if norm == "linf":
        delta = delta.clamp(-eps, eps)
    else:
        n = _per_example_norm(delta, 2.0)
        delta = delta * torch.clamp(eps / n.clamp_min(1e-12), max=1.0)
    return (x_clean + delta).clamp(0.0, 1.0)


def _check_images(fn: str, name: str, x: torch.Tensor) -> None:
    if not torch.is_floating_point(x):
        raise ArgumentTypeError(f"{fn}: `{name}` must be a floating-point image tensor, got {x.dtype}")
    if x.numel() and (float(x.min()) < 0.0 or float(x.max()) > 1.0):
        raise ConfigError(
            f"{fn}: `{name}` must hold images in [0, 1] (got min {float(x.min()):.3g}, max {float(x.max()):.3g}); "
            "normalise inside the model instead"
        )


def attack(
    model: Callable[[torch.Tensor], torch.Tensor],
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    method: str = "pgd",
    eps: float = 8 / 255,
    alpha: float | None = None,
    steps: int = 10,
    norm: str = "linf",
    targeted: bool = False,
    decay: float = 1.0,
    random_start: bool | None = None,
    loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None,
    transforms: Any = None,
    generator: torch.Generator | None = None,
    progress: bool = False,
) -> AttackResult:
    """Run an iterative attack and return an :class:`AttackResult`.

    Args:
        model: classifier ``model(x) -> logits``; its mode (train/eval) is left as it is.
        x: clean images in ``[0, 1]``, ``[B, ...]``. y: labels ``[B]`` (targets when ``targeted``).
        method: ``"ifgsm"`` (no random start), ``"pgd"`` (random start), ``"mifgsm"`` (momentum ``decay``).
        eps: budget (>= 0). alpha: step size (default ``eps / steps``, ``2.5 * eps / steps`` for PGD).
        norm: ``"linf"`` or ``"l2"``.
        loss_fn: per-example loss ``loss_fn(logits, y) -> [B]`` (default cross-entropy).
        transforms: active gradient transforms (e.g. ``["linbp"]``), attached to ``model`` during the attack.
    """
    if not callable(model):
        raise ArgumentTypeError(f"attack: `model` must be callable, got {type(model).__name__}")
    need_tensor("attack", "x", x)
    need_tensor("attack", "y", y)
    check_in("attack", "method", method, METHODS)
    check_in("attack", "norm", norm, NORMS)
    need_number("attack", "eps", eps, minimum=0.0)
    need_int("attack", "steps", steps)
    need_number("attack", "decay", decay, minimum=0.0)
    if alpha is None:
        alpha = (2.5 if method == "pgd" else 1.0) * eps / steps
    need_number("attack", "alpha", alpha, minimum=0.0)
    _check_images("attack", "x", x)
    if y.shape[:1] != x.shape[:1]:
        raise ConfigError(f"attack: `y` must have one label per image ({x.shape[0]}), got shape {tuple(y.shape)}")
    if random_start is None:
        random_start = method == "pgd"
    loss_fn = loss_fn or (lambda logits, target: F.cross_entropy(logits, target, reduction="none"))
    hook = get_plugin_manager().hook
    active = resolve(transforms)
    if active and not isinstance(model, torch.nn.Module):
        raise ArgumentTypeError("attack: transforms need `model` to be a torch.nn.Module")
    handles = [t.attach(model) for t in active.values()]  # type: ignore[arg-type]
    try:
        x_clean = x.detach()
        x_adv = x_clean.clone()
        if random_start and eps > 0:
            if norm == "linf":
                noise = torch.rand(x.shape, generator=generator, dtype=x.dtype, device="cpu").to(x.device) * 2 - 1
                x_adv = x_clean + eps * noise
            else:
                d = torch.randn(x.shape, generator=generator, dtype=x.dtype, device="cpu").to(x.device)
                r = torch.rand((x.shape[0],), generator=generator, dtype=x.dtype).to(x.device)
                d = d / _per_example_norm(d, 2.0).clamp_min(1e-12)
                x_adv = x_clean + eps * r.view(-1, *([1] * (x.dim() - 1))) * d
            x_adv = project(x_adv, x_clean, eps, norm)
        state = AttackState(model=model, x_clean=x_clean, y=y, x_adv=x_adv, method=method, norm=norm, eps=float(eps),
                            alpha=float(alpha), steps=steps, targeted=targeted, loss_fn=loss_fn, transforms=active,
                            hook=hook, decay=float(decay),
                            momentum=torch.zeros_like(x_clean) if method == "mifgsm" else None)
        hook.gradkit_attack_start(state=state)
        it: Any = range(steps)
        if progress:
            from tqdm.auto import tqdm

            it = tqdm(it, desc=f"gradkit.attack[{method}]", leave=False)
        for i in it:
            state.index = i
            grad = hook.gradkit_input_grad(state=state)
            if grad is None or grad.shape != state.x_adv.shape:
                raise ConfigError("gradkit_input_grad must return a tensor shaped like state.x_adv")
            state.grad = grad
            new = hook.gradkit_attack_step(state=state)
            if new is None:
                raise ConfigError("gradkit_attack_step returned None: no implementation updated x_adv")
            state.x_adv = new.detach()
        with torch.no_grad():
            pred = model(state.x_adv).argmax(dim=1)
        success = pred.eq(y) if targeted else pred.ne(y)
        result = AttackResult(x_adv=state.x_adv, success=success, losses=list(state.losses))
        hook.gradkit_attack_finish(state=state, result=result)
        return result
    finally:
        for h in reversed(handles):
            h.remove()


def default_input_grad(state: AttackState,
                       loss: Callable[[torch.Tensor], torch.Tensor] | None = None) -> torch.Tensor:
    """Plain-autograd gradient of ``loss(x_adv).sum()`` (default: ``state.loss``); records the mean loss."""
    x = state.x_adv.detach().requires_grad_(True)
    with torch.enable_grad():
        loss = (state.loss if loss is None else loss)(x).sum()
        (grad,) = torch.autograd.grad(loss, x)
    state.losses.append(float(loss.detach()) / max(1, x.shape[0]))
    return grad


def default_attack_step(state: AttackState) -> torch.Tensor:
    g = state.grad
    assert g is not None
    if state.method == "mifgsm":
        assert state.momentum is not None
        g = state.decay * state.momentum + g / _per_example_norm(g, 1.0).clamp_min(1e-12) * g[0].numel()
        state.momentum = g
    if state.norm == "linf":
        step = state.alpha * g.sign()
    else:
        step = state.alpha * g / _per_example_norm(g, 2.0).clamp_min(1e-12)
    return project(state.x_adv + step, state.x_clean, state.eps, state.norm)
