"""Hook specifications of gradkit (pluggy project ``gradkit``).

Every hook is called with keyword arguments only. Context objects (``Step``, ``SampleState``, ...)
are described in :mod:`gradkit.context`. Built-in defaults are registered ``trylast``, so a plugin's
implementation runs first; a ``firstresult`` hook stops at the first non-``None`` result, so a plugin
*replaces* the default by returning a value and *declines* by returning ``None``. Use
``@gradkit.hookimpl(wrapper=True)`` to wrap a phase.

Every hook below is documented, with this exact signature, in ``docs/hooks.md`` (a test checks it).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import pluggy

if TYPE_CHECKING:  # pragma: no cover
    import torch

    from .context import AttackState, LoopState, LossTerm, SampleState, Step, StepResult

PROJECT = "gradkit"
_hookspec = pluggy.HookspecMarker(PROJECT)


# ---------------------------------------------------------------------------------------------
# Registration
# ---------------------------------------------------------------------------------------------


@_hookspec
def gradkit_register_transforms(register: Callable[..., None]) -> None:
    """Register gradient transforms.

    Call ``register(name, factory, *, config=None, summary="")`` once per transform.
    ``factory(**config) -> GradientTransform``; ``config`` is the transform's config dataclass
    (a :class:`gradkit.config.Config`) used to validate keyword arguments of
    :func:`gradkit.transforms.create`. A name registered by two plugins is an error naming both.

    :param register: the host's registration callable.
    """


@_hookspec
def gradkit_register_demos(register: Callable[..., None]) -> None:
    """Register small end-to-end demos for ``gradkit demo``.

    Call ``register(name, fn, *, summary="")``; ``fn(ctx: DemoContext) -> dict`` runs on embedded
    defaults, writes plots into ``ctx.out_dir`` and returns summary numbers (name -> value).

    :param register: the host's registration callable.
    """


# ---------------------------------------------------------------------------------------------
# Training loop
# ---------------------------------------------------------------------------------------------


@_hookspec
def gradkit_loop_start(loop: LoopState) -> None:
    """A training run starts (after ``accelerator.prepare`` and transforms are attached).

    :param loop: the run's state.
    """


@_hookspec(firstresult=True)
def gradkit_train_step(step: Step) -> StepResult | None:
    """Run one whole optimizer step. firstresult.

    The default runs, per micro-batch, ``gradkit_forward_backward`` (which itself calls
    ``gradkit_loss_terms``), then ``gradkit_grads_ready``, the optimizer step, and returns a
    :class:`StepResult`; the loop then calls ``gradkit_step_report``.

    :param step: the step context.
    :return: the step's result, or ``None`` to let a later implementation run it.
    """


@_hookspec
def gradkit_loss_terms(step: Step, outputs: Any) -> LossTerm | list[LossTerm] | None:
    """Contribute named, weighted extra loss terms for the current micro-batch.

    Results of all implementations are collected; the default ``gradkit_forward_backward`` adds
    ``weight * value`` of each to the objective's loss before backward.

    :param step: the step context (``step.batch`` is the micro-batch).
    :param outputs: the model's outputs on that micro-batch.
    """


@_hookspec(firstresult=True)
def gradkit_forward_backward(step: Step) -> torch.Tensor | None:
    """Compute the loss of ``step.batch`` and accumulate its gradient into ``.grad``. firstresult.

    The default is plain autograd: forward, objective, extra loss terms, ``accelerator.backward``
    of ``loss * step.loss_scale``. An implementation must leave ``.grad`` exactly as that default
    would (up to floating-point rounding) unless it documents otherwise. A replacement that has the
    model's outputs should call ``step.collect_loss_terms(outputs)`` and include the terms; one that
    never materialises outputs (e.g. StreamBP) cannot, and must say so in its docs. Under DDP the
    default runs the step's micro-batches but the last under ``no_sync``; a replacement that runs
    several backward passes per micro-batch can run them all under ``no_sync`` and call
    :func:`gradkit.loops.train.reduce_gradients` when ``step.is_last_micro_batch``.

    :param step: the step context.
    :return: the detached objective loss of this micro-batch (without extra terms), or ``None``.
    """


@_hookspec
def gradkit_grads_ready(step: Step) -> None:
    """All micro-batches of the step are done and gradients are synchronised; before the optimizer step.

    :param step: the step context.
    """


@_hookspec
def gradkit_step_report(step: Step, result: StepResult) -> None:
    """A step finished. Implementations may add entries to ``result.metrics``.

    :param step: the step context.
    :param result: the step's result.
    """


@_hookspec
def gradkit_loop_finish(loop: LoopState, summary: dict[str, Any]) -> None:
    """A training run finished (before transforms are removed).

    :param loop: the run's state.
    :param summary: the summary the loop returns; implementations may add entries.
    """


# ---------------------------------------------------------------------------------------------
# Sampling loop (diffusion)
# ---------------------------------------------------------------------------------------------


@_hookspec
def gradkit_sample_start(state: SampleState) -> None:
    """A sampling run starts (timesteps are set, ``state.sample`` holds the initial noise).

    :param state: the sampling state.
    """


@_hookspec(firstresult=True)
def gradkit_sample_step(state: SampleState) -> torch.Tensor | None:
    """Advance the sample by one scheduler step. firstresult.

    The default calls the model at ``(state.sample, state.timestep)`` and ``scheduler.step``.

    :param state: the sampling state.
    :return: the next sample ``x_{t-1}``, or ``None`` to defer.
    """


@_hookspec
def gradkit_sample_finish(state: SampleState, sample: torch.Tensor) -> None:
    """A sampling run finished.

    :param state: the sampling state.
    :param sample: the final sample.
    """


# ---------------------------------------------------------------------------------------------
# Attack loop (input gradients)
# ---------------------------------------------------------------------------------------------


@_hookspec
def gradkit_attack_start(state: AttackState) -> None:
    """An attack starts (``state.x_adv`` holds the start point, random for PGD).

    :param state: the attack state.
    """


@_hookspec(firstresult=True)
def gradkit_input_grad(state: AttackState) -> torch.Tensor | None:
    """The gradient of the attack loss (summed over the batch) with respect to ``state.x_adv``. firstresult.

    The default is plain autograd through ``state.model``.

    :param state: the attack state.
    :return: a tensor shaped like ``state.x_adv``, or ``None`` to defer.
    """


@_hookspec(firstresult=True)
def gradkit_attack_step(state: AttackState) -> torch.Tensor | None:
    """Update and project ``state.x_adv`` using ``state.grad``. firstresult.

    The default is the l_inf (sign) or l_2 (normalised) ascent step, with MI-FGSM momentum when
    ``state.method == "mifgsm"``, projection onto the eps-ball around ``x_clean`` and clamping to [0, 1].

    :param state: the attack state.
    :return: the new adversarial inputs, or ``None`` to defer.
    """


@_hookspec
def gradkit_attack_finish(state: AttackState, result: Any) -> None:
    """An attack finished.

    :param state: the attack state.
    :param result: the :class:`gradkit.loops.attack.AttackResult`.
    """
