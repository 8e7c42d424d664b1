"""``gradkit.train``: a thin training loop on ``accelerate`` that calls the training hooks.

The same code runs in one process and under ``accelerate launch`` / ``torchrun`` with several
processes (DDP, gloo on CPU). Gradient accumulation reduces gradients once per optimizer step.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import math
import os
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from ..config import Config, check_in
from ..context import LoopState, Step, StepResult
from ..errors import ArgumentTypeError, ConfigError
from ..manager import get_plugin_manager
from ..transforms import resolve
from ._checks import need_int, need_module, need_number

__all__ = ["train", "TrainConfig", "reduce_gradients"]


@dataclass(frozen=True)
class TrainConfig(Config):
    """Execution settings of :func:`train` (logged with every run)."""

    steps: int = 100
    grad_accum: int = 1
    lr: float = 1e-3
    mixed_precision: str = "no"
    max_grad_norm: float | None = None
    checkpoint_dir: str | None = None
    checkpoint_every: int = 0
    resume: bool = False
    seed: int | None = None
    log_every: int = 1
    progress: bool = True

    def __post_init__(self) -> None:
        need_int("train", "steps", self.steps)
        need_int("train", "grad_accum", self.grad_accum)
        need_number("train", "lr", self.lr, minimum=0.0)
        check_in("train", "mixed_precision", self.mixed_precision, ("no", "fp16", "bf16"))
        if self.max_grad_norm is not None:
            need_number("train", "max_grad_norm", self.max_grad_norm, minimum=0.0, strict=True)
        need_int("train", "checkpoint_every", self.checkpoint_every, minimum=0)
        need_int("train", "log_every", self.log_every)
        if self.resume and not self.checkpoint_dir:
            raise ConfigError("train: `resume=True` needs `checkpoint_dir`")


def reduce_gradients(accelerator: Any, parameters: Iterable[torch.nn.Parameter]) -> None:
    """Average ``.grad`` over processes once, one flat all-reduce per dtype and device.

    For methods that run all their backward passes under ``no_sync`` (several per micro-batch) and
    reduce once per optimizer step. Parameters without a gradient are skipped on every rank alike
    only if they are skipped alike; give every rank the same set of trainable parameters.
    """
    if accelerator.num_processes <= 1:
        return
    import torch.distributed as dist

    buckets: dict[tuple[torch.dtype, torch.device], list[torch.Tensor]] = {}
    for p in parameters:
        if p.grad is not None:
            buckets.setdefault((p.grad.dtype, p.grad.device), []).append(p.grad)
    for grads in buckets.values():
        flat = torch.cat([g.reshape(-1) for g in grads])
        dist.all_reduce(flat, op=dist.ReduceOp.SUM)
        flat.div_(accelerator.num_processes)
        offset = 0
        for g in grads:
            n = g.numel()
            g.copy_(flat[offset:offset + n].view_as(g))
            offset += n


def _batches(data: Any) -> Iterable[Any]:
    """Cycle over ``data`` forever (re-iterating, so a shuffling DataLoader reshuffles)."""
    while True:
        empty = True
        for b in data:
            empty = False
            yield b
        if empty:
            raise ConfigError("train: `data` yielded no batches; pass a non-empty iterable of batches")


def _latest_checkpoint(root: Path) -> Path | None:
    if not root.is_dir():
        return None
    cands = [p for p in root.glob("step_*") if (p / "gradkit_state.json").exists()]
    if not cands:
        return None
    return max(cands, key=lambda p: int(p.name.split("_")[1]))


def _grad_norm(params: list[torch.nn.Parameter]) -> float:
    norms = [p.grad.detach().float().norm() for p in params if p.grad is not None]
    return float(torch.stack(norms).norm()) if norms else 0.0


def train(
    model: torch.nn.Module,
    data: Iterable[Any],
    *,
    objective: Callable[..., torch.Tensor],
    optimizer: torch.optim.Optimizer | None = None,
    steps: int = 100,
    grad_accum: int = 1,
    lr: float = 1e-3,
    transforms: Any = None,
    mixed_precision: str = "no",
    max_grad_norm: float | None = None,
    checkpoint_dir: str | os.PathLike[str] | None = None,
    checkpoint_every: int = 0,
    resume: bool = False,
    seed: int | None = None,
    log_every: int = 1,
    progress: bool = True,
    accelerator: Any = None,
    scheduler: Any = None,
) -> dict[str, Any]:
    """Train ``model`` for ``steps`` optimizer steps of ``grad_accum`` micro-batches each.

    Args:
        model: the module to train.
        data: an iterable of batches (a ``DataLoader``, a list, ...), cycled as needed. A
            ``DataLoader`` is sharded across processes by accelerate.
        objective: ``objective(outputs, batch, normalizer=None) -> loss`` (e.g. a
            :mod:`gradkit.objectives` object). If it has ``count(batch)``, the loop computes a global
            normaliser over the step's micro-batches and processes, so accumulation is exact.
        optimizer: defaults to ``AdamW(lr=lr)`` over trainable parameters.
        transforms: names, ``(name, config)`` pairs or :class:`GradientTransform` objects, attached
            to the model for the run and removed afterwards.
        mixed_precision: ``"no"``, ``"fp16"`` or ``"bf16"`` (accelerate's autocast).
        checkpoint_dir / checkpoint_every / resume: save ``accelerate`` state every N steps and at the
            end; with ``resume=True`` continue from the latest checkpoint in ``checkpoint_dir``.
        accelerator: an existing ``accelerate.Accelerator`` (else one is created).

    Returns:
        a summary dict: ``steps``, ``final_loss``, ``history`` (metrics per step), ``seconds``, ...
    """
    need_module("train", "model", model)
    if not callable(objective):
        raise ArgumentTypeError(f"train: `objective` must be callable, got {type(objective).__name__}")
    if optimizer is not None and not isinstance(optimizer, torch.optim.Optimizer):
        raise ArgumentTypeError(f"train: `optimizer` must be a torch.optim.Optimizer, got {type(optimizer).__name__}")
    if isinstance(data, (torch.Tensor, str, bytes)) or not hasattr(data, "__iter__"):
        raise ArgumentTypeError(
            f"train: `data` must be an iterable of batches (e.g. a DataLoader or a list), got {type(data).__name__}"
        )
    cfg = TrainConfig(
        steps=steps, grad_accum=grad_accum, lr=lr, mixed_precision=mixed_precision, max_grad_norm=max_grad_norm,
        checkpoint_dir=None if checkpoint_dir is None else str(checkpoint_dir), checkpoint_every=checkpoint_every,
        resume=resume, seed=seed, log_every=log_every, progress=progress,
    )
    from accelerate.utils import set_seed

    if accelerator is None:
        accelerator = _make_accelerator(cfg.mixed_precision)
    if cfg.seed is not None:
        set_seed(cfg.seed)
    pm = get_plugin_manager()
    hook = pm.hook
    active = resolve(transforms)
    handles = [t.attach(model) for t in active.values()]
    try:
        if optimizer is None:
            params = [p for p in model.parameters() if p.requires_grad]
            if not params:
                raise ConfigError("train: `model` has no trainable parameters (all requires_grad=False)")
            optimizer = torch.optim.AdamW(params, lr=cfg.lr)
        if isinstance(data, torch.utils.data.DataLoader):
            model, optimizer, data = accelerator.prepare(model, optimizer, data)
        else:
            model, optimizer = accelerator.prepare(model, optimizer)
        loop = LoopState(model=model, optimizer=optimizer, accelerator=accelerator, objective=objective,
                         transforms=active, config=cfg, hook=hook, scheduler=scheduler)
        ckpt_root = Path(cfg.checkpoint_dir) if cfg.checkpoint_dir else None
        if cfg.resume and ckpt_root is not None:
            latest = _latest_checkpoint(ckpt_root)
            if latest is not None:
                accelerator.load_state(str(latest))
                state = json.loads((latest / "gradkit_state.json").read_text())
                loop.step = int(state["step"])
                loop.history = list(state.get("history", []))
        hook.gradkit_loop_start(loop=loop)
        batches = _batches(data)
        if loop.step:
            batches = itertools.islice(batches, loop.step * cfg.grad_accum, None)
        bar = None
        if cfg.progress and accelerator.is_local_main_process:
            from tqdm.auto import tqdm

            bar = tqdm(total=cfg.steps, initial=loop.step, desc="gradkit.train", leave=False)
        t_start = time.perf_counter()
        while loop.step < cfg.steps:
            micro = [next(batches) for _ in range(cfg.grad_accum)]
            step = Step(loop=loop, index=loop.step, micro_batches=micro)
            count = getattr(objective, "count", None)
            if callable(count):
                local = [count(b) for b in micro]
                if all(c is not None for c in local):
                    total = torch.tensor(float(sum(local)), dtype=torch.float64, device=accelerator.device)
                    total = accelerator.reduce(total, reduction="sum") if accelerator.num_processes > 1 else total
                    step.normalizer = float(total) / accelerator.num_processes
            t0 = time.perf_counter()
            result = hook.gradkit_train_step(step=step)
            result.metrics.setdefault("step_seconds", time.perf_counter() - t0)
            hook.gradkit_step_report(step=step, result=result)
            record = {"step": float(loop.step), **result.as_dict()}
            loop.history.append(record)
            loop.step += 1
            if bar is not None:
                bar.update(1)
                if loop.step % cfg.log_every == 0:
                    bar.set_postfix(loss=f"{result.loss:.4g}")
            if ckpt_root is not None and cfg.checkpoint_every and loop.step % cfg.checkpoint_every == 0:
                _save(accelerator, ckpt_root, loop)
        if bar is not None:
            bar.close()
        if ckpt_root is not None:
            _save(accelerator, ckpt_root, loop)
        losses = [h["loss"] for h in loop.history]
        summary: dict[str, Any] = {
            "steps": loop.step,
            "final_loss": losses[-1] if losses else math.nan,
            "history": loop.history,
            "seconds": time.perf_counter() - t_start,
            "num_processes": accelerator.num_processes,
            "transforms": sorted(active),
            "config": cfg.to_dict(),
        }
        hook.gradkit_loop_finish(loop=loop, summary=summary)
        return summary
    finally:
        for h in reversed(handles):
            h.remove()


def _make_accelerator(mixed_precision: str) -> Any:
    """An Accelerator with this precision. accelerate keeps one process-wide state; in a single process
    a later run with another precision resets it (under a multi-process launch, set it at launch)."""
    from accelerate import Accelerator
    from accelerate.state import AcceleratorState, PartialState

    state = AcceleratorState._shared_state
    if state and str(state.get("_mixed_precision", mixed_precision)) != mixed_precision:
        if PartialState().num_processes > 1:
            raise ConfigError(
                f"train: `mixed_precision={mixed_precision!r}` differs from the launcher's "
                f"{state.get('_mixed_precision')!r}; set it with `accelerate launch --mixed_precision`"
            )
        AcceleratorState._reset_state()
    return Accelerator(mixed_precision=mixed_precision)


def _save(accelerator: Any, root: Path, loop: LoopState) -> None:
    out = root / f"step_{loop.step}"
    accelerator.wait_for_everyone()
    accelerator.save_state(str(out))
    if accelerator.is_main_process:
        (out / "gradkit_state.json").write_text(json.dumps({"step": loop.step, "history": loop.history}))
    accelerator.wait_for_everyone()


# -- defaults (registered trylast by gradkit.defaults) -----------------------------------------


def default_train_step(step: Step) -> StepResult:
    loop = step.loop
    acc = loop.accelerator
    total = 0.0
    n = step.num_micro_batches
    for i in range(n):
        step.micro_index = i
        ctx = acc.no_sync(loop.model) if (i < n - 1 and acc.num_processes > 1) else contextlib.nullcontext()
        with ctx:
            loss = loop.hook.gradkit_forward_backward(step=step)
        if loss is None:
            raise ConfigError("gradkit_forward_backward returned None: no implementation computed the loss")
        total += float(loss) * step.loss_scale
    loop.hook.gradkit_grads_ready(step=step)
    params = [p for g in loop.optimizer.param_groups for p in g["params"]]
    metrics: dict[str, float] = {"grad_norm": _grad_norm(params)}
    if loop.config.max_grad_norm is not None:
        acc.clip_grad_norm_(params, loop.config.max_grad_norm)
    loop.optimizer.step()
    if loop.scheduler is not None:
        loop.scheduler.step()
    loop.optimizer.zero_grad(set_to_none=True)
    metrics["lr"] = float(loop.optimizer.param_groups[0]["lr"])
    terms = {k: v * step.loss_scale for k, v in step.terms.items()}
    return StepResult(loss=total, terms=terms, metrics=metrics)


def default_forward_backward(step: Step) -> torch.Tensor:
    acc = step.accelerator
    with acc.autocast():
        outputs = step.forward()
        loss = step.compute_loss(outputs)
        extra = step.collect_loss_terms(outputs)
    total = loss
    for term in extra:
        total = total + term.weight * term.value
        step.terms[term.name] = step.terms.get(term.name, 0.0) + float(term.value.detach())
    acc.backward(total * step.loss_scale)
    return loss.detach()
