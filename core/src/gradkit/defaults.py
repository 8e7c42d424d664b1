"""Built-in default implementations of the loop hooks, registered ``trylast``.

A plugin replaces a phase by returning a non-``None`` value from the same firstresult hook, or
wraps it with ``@hookimpl(wrapper=True)``.
"""

from __future__ import annotations

from typing import Any

from .manager import hookimpl


@hookimpl(trylast=True)
def gradkit_train_step(step: Any) -> Any:
    from .loops.train import default_train_step

    return default_train_step(step)


@hookimpl(trylast=True)
def gradkit_forward_backward(step: Any) -> Any:
    from .loops.train import default_forward_backward

    return default_forward_backward(step)


@hookimpl(trylast=True)
def gradkit_sample_step(state: Any) -> Any:
    from .loops.sample import default_sample_step

    return default_sample_step(state)


@hookimpl(trylast=True)
def gradkit_input_grad(state: Any) -> Any:
    from .loops.attack import default_input_grad

    return default_input_grad(state)


@hookimpl(trylast=True)
def gradkit_attack_step(state: Any) -> Any:
    from .loops.attack import default_attack_step

    return default_attack_step(state)
