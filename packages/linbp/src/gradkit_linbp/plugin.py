"""gradkit hook implementations of gradkit-linbp (registration and attack-loop hooks only)."""

from __future__ import annotations

from typing import Any

from gradkit import hookimpl


@hookimpl
def gradkit_register_transforms(register: Any) -> None:
    from .config import ILAConfig, LinBPConfig
    from .ila import ILA
    from .transform import LinBP

    register("linbp", lambda **cfg: LinBP(config=LinBPConfig(**cfg)), config=LinBPConfig,
             summary="LinBP: backprop through ReLUs as identity from a start position (block renorm), forward unchanged")
    register("ila", lambda **cfg: ILA(config=ILAConfig(**cfg)), config=ILAConfig,
             summary="ILA second stage: maximise the feature-change projection onto a stage-1 example at a layer")


@hookimpl
def gradkit_register_demos(register: Any) -> None:
    from .demo import demo

    register("linbp", demo, summary="MNIST-5k transfer table: I-FGSM/PGD/MI-FGSM/ILA with and without LinBP")


@hookimpl
def gradkit_attack_start(state: Any) -> None:
    ila = state.transform("ila")
    if ila is not None:
        ila.start(state.x_clean)


@hookimpl
def gradkit_input_grad(state: Any) -> Any:
    ila = state.transform("ila")
    if ila is None:
        return None
    from gradkit.loops.attack import default_input_grad

    return default_input_grad(state, ila.loss)


@hookimpl
def gradkit_attack_step(state: Any) -> Any:
    if state.transform("linbp") is None and state.transform("ila") is None:
        return None
    from .ops.update import attack_update

    momentum = state.momentum if state.method == "mifgsm" else None
    x_new, m_new = attack_update(state.x_adv, state.x_clean, state.grad, alpha=state.alpha, eps=state.eps,
                                 norm=state.norm, momentum=momentum, decay=state.decay)
    if m_new is not None:
        state.momentum = m_new
    return x_new
