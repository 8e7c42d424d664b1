import gradkit
import pytest
import torch
from gradkit.errors import ArgumentTypeError, ConfigError, TransformError, UnknownNameError
from gradkit.transforms import GradientTransform, TransformHandle, create, resolve


class Halve(GradientTransform):
    name = "halve"

    def _attach(self, module, handle):
        old = module.weight.data.clone()
        module.weight.data.mul_(0.5)
        handle.add(lambda: module.weight.data.copy_(old))


def test_attach_remove_restores_and_is_idempotent():
    m = torch.nn.Linear(3, 3)
    w = m.weight.detach().clone()
    t = Halve()
    h = t.attach(m)
    assert isinstance(h, TransformHandle) and t.attached
    assert torch.equal(m.weight, 0.5 * w)
    with pytest.raises(TransformError, match="already attached"):
        t.attach(m)
    h.remove()
    h.remove()
    assert torch.equal(m.weight, w) and not t.attached


def test_context_manager_needs_module():
    m = torch.nn.Linear(2, 2)
    w = m.weight.detach().clone()
    with Halve(m):
        assert torch.equal(m.weight, 0.5 * w)
    assert torch.equal(m.weight, w)
    with pytest.raises(TransformError, match="without a module"):
        with Halve():
            pass


def test_attach_rejects_non_module():
    with pytest.raises(ConfigError, match="module"):
        Halve().attach("not a module")


def test_failed_attach_undoes_partial_work():
    class Fails(GradientTransform):
        name = "fails"

        def _attach(self, module, handle):
            old = module.weight.data.clone()
            module.weight.data.add_(1.0)
            handle.add(lambda: module.weight.data.copy_(old))
            raise RuntimeError("half way")

    m = torch.nn.Linear(2, 2)
    w = m.weight.detach().clone()
    with pytest.raises(RuntimeError):
        Fails().attach(m)
    assert torch.equal(m.weight, w)


def test_registry_create_available_unknown():
    from dataclasses import dataclass

    from gradkit.config import Config

    @dataclass(frozen=True)
    class HalveConfig(Config):
        k: int = 1

    class P:
        @gradkit.hookimpl
        def gradkit_register_transforms(self, register):
            register("halve", lambda **kw: Halve(config=HalveConfig(**kw)), config=HalveConfig, summary="halve weights")

    gradkit.register(P(), name="p")
    assert gradkit.transforms.available()["halve"] == "halve weights"
    t = create("halve", k=3)
    assert t.config == HalveConfig(k=3)
    assert gradkit.transforms.describe("halve")["config"] == {"k": 1}
    with pytest.raises(ConfigError, match=r"unknown config key.*'zz'.*valid keys are \['k'\]"):
        create("halve", zz=1)
    with pytest.raises(UnknownNameError, match=r"unknown transform 'nope'; available transforms: .*halve"):
        create("nope")
    got = resolve(["halve", ("halve", {"k": 2})][:1])
    assert list(got) == ["halve"]
    with pytest.raises(ConfigError, match="given twice"):
        resolve(["halve", ("halve", {"k": 2})])
    with pytest.raises(ArgumentTypeError, match="transforms"):
        resolve([3])


def test_config_round_trip_and_validation_helpers():
    from dataclasses import dataclass

    from gradkit.config import Config, check_in, check_positive, check_range

    @dataclass(frozen=True)
    class C(Config):
        a: float = 1.0
        mode: str = "x"

        def __post_init__(self):
            check_positive("C", "a", self.a)
            check_in("C", "mode", self.mode, ("x", "y"))

    c = C(a=2.0, mode="y")
    assert C.from_json(c.to_json()) == c == C.from_dict(c.to_dict())
    with pytest.raises(ConfigError, match="`a` must be > 0"):
        C(a=0)
    with pytest.raises(ConfigError, match="`mode` must be one of"):
        C(mode="z")
    with pytest.raises(ConfigError, match="unknown field"):
        C.from_dict({"b": 1})
    with pytest.raises(ConfigError, match=r"`t_star` must be in \(0.0, 1.0\]"):
        check_range("f", "t_star", 0.0, 0.0, 1.0, lo_open=True)
