"""Context objects passed to hooks as keyword arguments.

Hooks receive one rich object per phase (``Step``, ``SampleState``, ``AttackState``, ...) instead of
many positional values, so these objects can gain fields without breaking any plugin. Each carries a
:class:`Stash`, a typed store where plugins keep per-run state under their own :class:`StashKey`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Generic, TypeVar, overload

if TYPE_CHECKING:  # pragma: no cover
    import torch
    from accelerate import Accelerator

    from .transforms import GradientTransform

__all__ = [
    "StashKey",
    "Stash",
    "LossTerm",
    "LoopState",
    "Step",
    "StepResult",
    "SampleState",
    "AttackState",
]

T = TypeVar("T")
D = TypeVar("D")


class StashKey(Generic[T]):
    """A typed key for :class:`Stash`. Create one per plugin at module level: ``KEY = StashKey[int]()``."""

    __slots__ = ("name",)

    def __init__(self, name: str = "") -> None:
        self.name = name

    def __repr__(self) -> str:
        return f"StashKey({self.name!r})"


class Stash:
    """A typed per-run store: ``stash[KEY] = value``; ``stash.get(KEY, default)``; ``KEY in stash``."""

    __slots__ = ("_data",)

    def __init__(self) -> None:
        self._data: dict[StashKey[Any], Any] = {}

    def __setitem__(self, key: StashKey[T], value: T) -> None:
        self._data[key] = value

    def __getitem__(self, key: StashKey[T]) -> T:
        return self._data[key]  # type: ignore[no-any-return]

    @overload
    def get(self, key: StashKey[T], default: None = None) -> T | None: ...
    @overload
    def get(self, key: StashKey[T], default: D) -> T | D: ...
    def get(self, key: StashKey[T], default: Any = None) -> Any:
        return self._data.get(key, default)

    def setdefault(self, key: StashKey[T], default: T) -> T:
        return self._data.setdefault(key, default)  # type: ignore[no-any-return]

    def __delitem__(self, key: StashKey[Any]) -> None:
        del self._data[key]

    def __contains__(self, key: object) -> bool:
        return key in self._data

    def __len__(self) -> int:
        return len(self._data)


class _HasTransforms:
    transforms: dict[str, GradientTransform]

    def transform(self, name: str) -> GradientTransform | None:
        """The active transform registered under ``name``, or ``None`` when it is not active."""
        return self.transforms.get(name)


@dataclass(frozen=True)
class LossTerm:
    """A named, weighted extra loss term returned by ``gradkit_loss_terms``.

    ``value`` is a scalar tensor attached to the graph; the loop adds ``weight * value`` to the loss.
    """

    name: str
    value: torch.Tensor
    weight: float = 1.0


@dataclass
class LoopState(_HasTransforms):
    """One training run: what ``gradkit_loop_start`` / ``gradkit_loop_finish`` receive.

    Attributes:
        model: the (accelerate-prepared) model being trained.
        optimizer: the (prepared) optimizer.
        accelerator: the ``accelerate.Accelerator`` running the loop.
        objective: ``objective(outputs, batch, normalizer=None) -> loss`` (see :mod:`gradkit.objectives`).
        transforms: active gradient transforms by name.
        config: the run's :class:`gradkit.loops.train.TrainConfig`.
        step: index of the next optimizer step (0-based; after resume, the resumed step).
        history: one metrics dict per finished step.
        hook: the plugin manager's hook relay (``loop.hook.gradkit_...``).
    """

    model: torch.nn.Module
    optimizer: Any
    accelerator: Accelerator
    objective: Callable[..., torch.Tensor]
    transforms: dict[str, GradientTransform]
    config: Any
    hook: Any
    scheduler: Any = None
    step: int = 0
    history: list[dict[str, float]] = field(default_factory=list)
    stash: Stash = field(default_factory=Stash)


@dataclass
class Step(_HasTransforms):
    """One optimizer step (possibly several micro-batches), passed to the training hooks.

    Attributes:
        loop: the :class:`LoopState`.
        index: the optimizer step index (0-based).
        micro_batches: the micro-batches of this step (``grad_accum`` of them).
        micro_index: which micro-batch ``batch`` is.
        batch: the current micro-batch (a dict of tensors, a tuple, or a tensor).
        normalizer: global normaliser for this step (e.g. the number of target tokens over all
            micro-batches and processes) when the objective defines one, else ``None``.
        terms: values of the extra loss terms seen so far in this step (name -> float, summed).
    """

    loop: LoopState
    index: int
    micro_batches: list[Any]
    micro_index: int = 0
    normalizer: float | None = None
    terms: dict[str, float] = field(default_factory=dict)
    stash: Stash = field(default_factory=Stash)

    @property
    def batch(self) -> Any:
        return self.micro_batches[self.micro_index]

    @property
    def model(self) -> torch.nn.Module:
        return self.loop.model

    @property
    def optimizer(self) -> Any:
        return self.loop.optimizer

    @property
    def accelerator(self) -> Accelerator:
        return self.loop.accelerator

    @property
    def objective(self) -> Callable[..., torch.Tensor]:
        return self.loop.objective

    @property
    def transforms(self) -> dict[str, GradientTransform]:  # type: ignore[override]
        return self.loop.transforms

    @property
    def num_micro_batches(self) -> int:
        return len(self.micro_batches)

    @property
    def is_last_micro_batch(self) -> bool:
        """True for the step's last micro-batch (where the default loop lets DDP reduce gradients)."""
        return self.micro_index == len(self.micro_batches) - 1

    @property
    def loss_scale(self) -> float:
        """Factor the micro-batch loss is multiplied by before backward.

        ``1 / grad_accum`` when the objective has no global normaliser (each micro-batch loss is a
        mean), ``1`` when it has one (the normaliser already spans all micro-batches).
        """
        return 1.0 if self.normalizer is not None else 1.0 / len(self.micro_batches)

    def forward(self, batch: Any | None = None) -> Any:
        """Run the model on ``batch`` (default: the current micro-batch): ``model(**b)``, ``model(*b)`` or ``model(b)``."""
        b = self.batch if batch is None else batch
        if isinstance(b, dict) and "input_ids" not in b and "x" in b:
            return self.model(b["x"])
        if isinstance(b, dict):
            return self.model(**{k: v for k, v in b.items() if k in _model_keys(b)})
        if isinstance(b, (tuple, list)):
            return self.model(b[0])
        return self.model(b)

    def compute_loss(self, outputs: Any, batch: Any | None = None) -> torch.Tensor:
        """The objective's loss on ``outputs`` for ``batch`` (default: the current micro-batch)."""
        b = self.batch if batch is None else batch
        return self.objective(outputs, b, normalizer=self.normalizer)

    def collect_loss_terms(self, outputs: Any) -> list[LossTerm]:
        """Call ``gradkit_loss_terms`` and return the flattened list of :class:`LossTerm`."""
        got = self.loop.hook.gradkit_loss_terms(step=self, outputs=outputs)
        terms: list[LossTerm] = []
        for item in got:
            if item is None:
                continue
            items = [item] if isinstance(item, LossTerm) else list(item)
            for term in items:
                if not isinstance(term, LossTerm):
                    from .errors import PluginError

                    raise PluginError(
                        f"gradkit_loss_terms must return LossTerm objects (or a list of them), got {type(term).__name__}"
                    )
                terms.append(term)
        return terms


_NON_MODEL_KEYS = frozenset({"labels", "completion_mask", "loss_mask", "ref_logps", "ref_chosen_logps", "ref_rejected_logps", "advantages", "old_logps", "ref_token_logps"})


def _model_keys(batch: dict[str, Any]) -> list[str]:
    return [k for k in batch if k not in _NON_MODEL_KEYS]


@dataclass
class StepResult:
    """What one optimizer step produced: passed to ``gradkit_step_report``.

    Attributes:
        loss: the objective's loss summed over micro-batches (without extra terms), as a float.
        terms: extra loss terms (name -> value), summed over micro-batches.
        metrics: anything else (grad norm, lr, timings); plugins may add entries in ``gradkit_step_report``.
    """

    loss: float
    terms: dict[str, float] = field(default_factory=dict)
    metrics: dict[str, float] = field(default_factory=dict)
    stash: Stash = field(default_factory=Stash)

    def as_dict(self) -> dict[str, float]:
        out = {"loss": self.loss}
        out.update({f"term/{k}": v for k, v in self.terms.items()})
        out.update(self.metrics)
        return out


@dataclass
class SampleState(_HasTransforms):
    """The state of a diffusion sampling run, passed to the sampling hooks.

    Attributes:
        model: the denoiser (a diffusers ``UNet2DModel``-like module: ``model(x, t).sample``).
        scheduler: a diffusers scheduler with ``set_timesteps`` and ``step``.
        sample: the current sample ``x_t`` (updated by the loop after each step).
        timestep: the current timestep ``t`` (a scalar tensor or int).
        index: step index (0-based) into ``scheduler.timesteps``.
        num_steps: number of inference steps.
        generator: the ``torch.Generator`` used for noise, if any.
        model_kwargs: extra keyword arguments for the model call (e.g. ``encoder_hidden_states``).
    """

    model: Any
    scheduler: Any
    sample: torch.Tensor
    num_steps: int
    transforms: dict[str, GradientTransform]
    hook: Any
    timestep: Any = None
    index: int = 0
    generator: torch.Generator | None = None
    model_kwargs: dict[str, Any] = field(default_factory=dict)
    trajectory: list[torch.Tensor] | None = None
    stash: Stash = field(default_factory=Stash)

    @property
    def prev_timestep(self) -> Any:
        """The timestep the current step moves to (``scheduler.timesteps[index + 1]``), ``None`` on the last step."""
        ts = self.scheduler.timesteps
        return ts[self.index + 1] if self.index + 1 < len(ts) else None

    def predict_noise(self, x: torch.Tensor | None = None, t: Any = None) -> torch.Tensor:
        """The model's output at ``(x, t)`` (default: current sample and timestep)."""
        x = self.sample if x is None else x
        t = self.timestep if t is None else t
        out = self.model(x, t, **self.model_kwargs)
        return out.sample if hasattr(out, "sample") else out


@dataclass
class AttackState(_HasTransforms):
    """The state of an iterative input-gradient attack, passed to the attack hooks.

    Attributes:
        model: the classifier under attack (``model(x) -> logits``).
        x_clean: the clean inputs in ``[0, 1]``.
        y: the labels (true labels when untargeted, target labels when ``targeted``).
        x_adv: the current adversarial inputs (updated by the loop after each step).
        grad: the gradient from ``gradkit_input_grad`` at this iteration (``None`` before it).
        momentum: the MI-FGSM accumulator (``None`` unless ``method == "mifgsm"``).
        method: ``"ifgsm"``, ``"pgd"`` or ``"mifgsm"``.
        norm: ``"linf"`` or ``"l2"``.
        eps, alpha, decay: budget, step size and MI-FGSM decay.
        targeted: minimise the loss towards ``y`` instead of maximising it.
        index, steps: iteration index and count.
        loss_fn: ``loss_fn(logits, y) -> per-example loss [B]``.
    """

    model: Any
    x_clean: torch.Tensor
    y: torch.Tensor
    x_adv: torch.Tensor
    method: str
    norm: str
    eps: float
    alpha: float
    steps: int
    targeted: bool
    loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
    transforms: dict[str, GradientTransform]
    hook: Any
    decay: float = 1.0
    index: int = 0
    grad: torch.Tensor | None = None
    momentum: torch.Tensor | None = None
    losses: list[float] = field(default_factory=list)
    stash: Stash = field(default_factory=Stash)

    def loss(self, x: torch.Tensor | None = None) -> torch.Tensor:
        """Per-example attack loss at ``x`` (default ``x_adv``), sign-adjusted so the attack ascends it."""
        x = self.x_adv if x is None else x
        per_example = self.loss_fn(self.model(x), self.y)
        return -per_example if self.targeted else per_example

