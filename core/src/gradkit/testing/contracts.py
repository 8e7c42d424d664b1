"""Contract tests every gradkit plugin subclasses (in the spirit of LangChain's standard tests).

Example::

    from gradkit.testing import PluginContract

    class TestLinBPContract(PluginContract):
        plugin_name = "linbp"
        distribution = "gradkit-linbp"
        transform_names = ("linbp",)
        demo_names = ("linbp",)

        def make_model(self, transform_name):
            return tiny_resnet()

        def make_inputs(self, transform_name):
            return (torch.rand(2, 3, 16, 16),)

        def misuse_cases(self):
            return [lambda: LinBP(torch.nn.Linear(2, 2), start=0)]   # no ReLU -> ConfigError
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from importlib import metadata
from typing import Any

import pytest
import torch

from ..config import Config
from ..errors import ConfigError, GradkitError, UnknownNameError
from ..manager import ENTRY_POINT_GROUP, demo_entries, get_plugin_manager, reset_plugin_manager
from ..transforms import GradientTransform, TransformHandle, create

__all__ = ["PluginContract", "outputs_and_grads", "assert_same_outputs_and_grads"]


def outputs_and_grads(model: torch.nn.Module, inputs: tuple[Any, ...],
                      loss: Callable[[Any], torch.Tensor] | None = None) -> tuple[list[torch.Tensor], dict[str, torch.Tensor]]:
    """Run ``model(*inputs)``, backprop a scalar, and return (outputs, parameter and input gradients)."""
    inputs = tuple(i.detach().clone().requires_grad_(i.is_floating_point()) if isinstance(i, torch.Tensor) else i
                   for i in inputs)
    model.zero_grad(set_to_none=True)
    out = model(*inputs)
    if hasattr(out, "logits"):
        out = out.logits
    elif hasattr(out, "sample") and isinstance(out.sample, torch.Tensor):
        out = out.sample
    outs = list(out) if isinstance(out, (tuple, list)) else [out]
    scalar = loss(out) if loss is not None else sum((o.double() * torch.linspace(0.5, 1.5, o.numel(), dtype=torch.float64).view_as(o)).sum()
                                                      for o in outs if isinstance(o, torch.Tensor) and o.is_floating_point())
    scalar.backward()
    grads = {f"param:{n}": p.grad.detach().clone() for n, p in model.named_parameters() if p.grad is not None}
    for k, i in enumerate(inputs):
        if isinstance(i, torch.Tensor) and i.grad is not None:
            grads[f"input:{k}"] = i.grad.detach().clone()
    model.zero_grad(set_to_none=True)
    return [o.detach().clone() for o in outs if isinstance(o, torch.Tensor)], grads


def assert_same_outputs_and_grads(a: tuple[list[torch.Tensor], dict[str, torch.Tensor]],
                                  b: tuple[list[torch.Tensor], dict[str, torch.Tensor]]) -> None:
    """Bitwise equality of two :func:`outputs_and_grads` results."""
    outs_a, grads_a = a
    outs_b, grads_b = b
    assert len(outs_a) == len(outs_b)
    for x, y in zip(outs_a, outs_b):
        assert torch.equal(x, y), "outputs differ"
    assert grads_a.keys() == grads_b.keys(), f"gradients present differ: {sorted(grads_a.keys() ^ grads_b.keys())}"
    for k in grads_a:
        assert torch.equal(grads_a[k], grads_b[k]), f"gradient {k} differs"


class PluginContract:
    """Base class of the contract tests a plugin's test-suite subclasses.

    Set ``plugin_name`` (the entry-point name), ``distribution``, ``transform_names`` and
    ``demo_names``; implement :meth:`make_model` / :meth:`make_inputs` (return ``None`` from
    ``make_model`` for transforms that do not modify a module, e.g. loop-only transforms) and
    :meth:`misuse_cases`.
    """

    plugin_name: str = ""
    distribution: str = ""
    transform_names: tuple[str, ...] = ()
    demo_names: tuple[str, ...] = ()

    # -- to override ---------------------------------------------------------------------------
    def make_model(self, transform_name: str) -> torch.nn.Module | None:
        return None

    def make_inputs(self, transform_name: str) -> tuple[Any, ...]:
        raise NotImplementedError

    def transform_config(self, transform_name: str) -> dict[str, Any]:
        """Keyword config passed to ``create`` (default: the registered defaults)."""
        return {}

    def exercise(self, transform: GradientTransform, model: torch.nn.Module, inputs: tuple[Any, ...]) -> None:
        """Use the attached transform once (default: a forward and backward pass)."""
        outputs_and_grads(model, inputs)

    def misuse_cases(self) -> list[Callable[[], Any]]:
        """Callables that misuse the plugin; each must raise a ``gradkit.errors.GradkitError``."""
        return []

    # -- the contract --------------------------------------------------------------------------
    @pytest.fixture(autouse=True)
    def _fresh_manager(self) -> Any:
        reset_plugin_manager()
        yield
        reset_plugin_manager()

    def test_entry_point_loads(self) -> None:
        eps = [ep for ep in metadata.entry_points(group=ENTRY_POINT_GROUP) if ep.name == self.plugin_name]
        assert eps, f"no entry point {self.plugin_name!r} in group {ENTRY_POINT_GROUP!r}"
        if self.distribution:
            assert any(ep.dist is not None and ep.dist.metadata["Name"] == self.distribution for ep in eps)
        eps[0].load()
        assert get_plugin_manager().get_plugin(self.plugin_name) is not None

    def test_transforms_registered(self) -> None:
        from ..transforms import available

        names = available()
        for n in self.transform_names:
            assert n in names, f"transform {n!r} not registered; have {sorted(names)}"
            assert names[n], f"transform {n!r} has no summary"

    def test_demos_registered(self) -> None:
        demos = demo_entries()
        for n in self.demo_names:
            assert n in demos, f"demo {n!r} not registered; have {sorted(demos)}"
            assert demos[n].plugin == self.plugin_name

    def test_config_round_trips(self) -> None:
        for n in self.transform_names:
            t = create(n, **self.transform_config(n))
            assert isinstance(t, GradientTransform)
            assert isinstance(t.config, Config), f"{n}: .config must be a gradkit.config.Config dataclass"
            d = t.config.to_dict()
            json.dumps(d)  # JSON-serialisable
            again = create(n, **d)
            assert again.config == t.config
            assert type(t.config).from_json(t.config.to_json()) == t.config

    def test_unknown_config_key_is_an_error(self) -> None:
        for n in self.transform_names:
            with pytest.raises(ConfigError, match="no_such_option"):
                create(n, no_such_option=1)

    def test_unknown_transform_name_lists_available(self) -> None:
        with pytest.raises(UnknownNameError) as info:
            create("no-such-transform")
        for n in self.transform_names:
            assert n in str(info.value)

    def test_attach_remove_restores_exactly(self) -> None:
        ran = False
        for n in self.transform_names:
            model = self.make_model(n)
            if model is None:
                continue
            ran = True
            inputs = self.make_inputs(n)
            state_before = copy.deepcopy(model.state_dict())
            before = outputs_and_grads(model, inputs)
            t = create(n, **self.transform_config(n))
            handle = t.attach(model)
            assert isinstance(handle, TransformHandle)
            self.exercise(t, model, inputs)
            handle.remove()
            handle.remove()  # idempotent
            after = outputs_and_grads(model, inputs)
            assert_same_outputs_and_grads(before, after)
            state_after = model.state_dict()
            assert state_before.keys() == state_after.keys()
            for k in state_before:
                assert torch.equal(state_before[k], state_after[k]), f"{n}: state {k} changed by attach/remove"
        if not ran and self.transform_names:
            pytest.skip("no transform of this plugin modifies a module (make_model returned None)")

    def test_misuse_raises_gradkit_errors(self) -> None:
        cases = self.misuse_cases()
        if not cases:
            pytest.skip("no misuse cases declared")
        for case in cases:
            with pytest.raises(GradkitError):
                case()
