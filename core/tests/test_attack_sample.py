import gradkit
import pytest
import torch
from gradkit.errors import ArgumentTypeError, ConfigError
from gradkit.loops.attack import project


def _clf(seed=0):
    torch.manual_seed(seed)
    return torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(16, 32), torch.nn.ReLU(), torch.nn.Linear(32, 4)).double()


def _xy(n=16, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, 1, 4, 4, generator=g, dtype=torch.float64), torch.randint(0, 4, (n,), generator=g)


@pytest.mark.parametrize("method", ["ifgsm", "pgd", "mifgsm"])
@pytest.mark.parametrize("norm", ["linf", "l2"])
def test_attacks_stay_in_budget_and_raise_loss(method, norm):
    model, (x, y) = _clf(), _xy()
    eps = 0.1 if norm == "linf" else 0.5
    res = gradkit.attack(model, x, y, method=method, norm=norm, eps=eps, steps=8,
                         generator=torch.Generator().manual_seed(0))
    d = (res.x_adv - x).flatten(1)
    if norm == "linf":
        assert d.abs().max() <= eps + 1e-12
    else:
        assert d.norm(dim=1).max() <= eps + 1e-9
    assert res.x_adv.min() >= 0 and res.x_adv.max() <= 1
    ce = torch.nn.functional.cross_entropy
    assert ce(model(res.x_adv), y) > ce(model(x), y)
    assert res.success.shape == y.shape


def test_ifgsm_matches_explicit_iteration():
    model, (x, y) = _clf(), _xy()
    res = gradkit.attack(model, x, y, method="ifgsm", eps=0.05, alpha=0.01, steps=3)
    xa = x.clone()
    for _ in range(3):
        xa.requires_grad_(True)
        (g,) = torch.autograd.grad(torch.nn.functional.cross_entropy(model(xa), y, reduction="sum"), xa)
        xa = torch.min(torch.max(xa.detach() + 0.01 * g.sign(), x - 0.05), x + 0.05).clamp(0, 1)
    torch.testing.assert_close(res.x_adv, xa, rtol=0, atol=1e-15)  # projection order: float64 rounding only


def test_targeted_attack_moves_towards_target():
    model, (x, _) = _clf(), _xy()
    target = torch.zeros(len(x), dtype=torch.long)
    res = gradkit.attack(model, x, target, method="pgd", eps=0.3, steps=20, targeted=True,
                         generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        before = (model(x).argmax(1) == 0).float().mean()
        after = (model(res.x_adv).argmax(1) == 0).float().mean()
    assert after > before


def test_projection_l2():
    x = torch.zeros(2, 3)
    out = project(torch.tensor([[3.0, 4.0, 0.0], [0.1, 0.0, 0.0]]), x, 1.0, "l2")
    torch.testing.assert_close(out, torch.tensor([[0.6, 0.8, 0.0], [0.1, 0.0, 0.0]]))


@pytest.mark.parametrize(
    "kwargs, exc, match",
    [
        ({"eps": -0.1}, ConfigError, "`eps` must be >= 0"),
        ({"steps": 0}, ConfigError, "`steps`"),
        ({"method": "fgsm2"}, ConfigError, "`method` must be one of"),
        ({"norm": "l1"}, ConfigError, "`norm`"),
        ({"x": torch.full((2, 1, 4, 4), 2.0)}, ConfigError, r"\[0, 1\]"),
        ({"x": "img"}, ArgumentTypeError, "`x` must be a torch.Tensor"),
        ({"y": torch.zeros(3, dtype=torch.long)}, ConfigError, "one label per image"),
    ],
)
def test_attack_bad_input(kwargs, exc, match):
    args = {"x": torch.rand(2, 1, 4, 4, dtype=torch.float64), "y": torch.zeros(2, dtype=torch.long)}
    args.update(kwargs)
    with pytest.raises(exc, match=match):
        gradkit.attack(_clf(), args.pop("x"), args.pop("y"), **args)


def _unet():
    from diffusers import UNet2DModel

    torch.manual_seed(0)
    return UNet2DModel(sample_size=8, in_channels=1, out_channels=1, layers_per_block=1,
                       block_out_channels=(8, 16), down_block_types=("DownBlock2D", "DownBlock2D"),
                       up_block_types=("UpBlock2D", "UpBlock2D"), norm_num_groups=4).eval()


@pytest.mark.parametrize("sched", ["ddpm", "ddim"])
def test_sample_equals_a_plain_diffusers_loop(sched):
    from diffusers import DDIMScheduler, DDPMScheduler

    cls = DDPMScheduler if sched == "ddpm" else DDIMScheduler
    unet = _unet()
    ours = gradkit.sample(unet, cls(num_train_timesteps=50), shape=(2, 1, 8, 8), num_inference_steps=5,
                          generator=torch.Generator().manual_seed(3), progress=False)
    s = cls(num_train_timesteps=50)
    s.set_timesteps(5)
    g = torch.Generator().manual_seed(3)
    x = torch.randn((2, 1, 8, 8), generator=g) * s.init_noise_sigma
    with torch.no_grad():
        for t in s.timesteps:
            eps = unet(x, t).sample
            x = s.step(eps, t, x, generator=g).prev_sample
    torch.testing.assert_close(ours, x, rtol=0, atol=0)


def test_sample_hook_can_replace_step_and_see_trajectory():
    from diffusers import DDIMScheduler

    seen = []

    class Zero:
        @gradkit.hookimpl
        def gradkit_sample_step(self, state):
            seen.append((int(state.timestep), state.prev_timestep))
            return torch.zeros_like(state.sample) + state.index

    gradkit.register(Zero(), name="zero")
    out, traj = gradkit.sample(_unet(), DDIMScheduler(num_train_timesteps=50), shape=(1, 1, 8, 8),
                               num_inference_steps=3, progress=False, return_trajectory=True)
    assert [float(t.mean()) for t in traj] == [0.0, 1.0, 2.0]
    assert float(out.mean()) == 2.0
    assert [t for t, _ in seen][1:] == [int(p) for _, p in seen[:-1]] and seen[-1][1] is None


def test_sample_bad_input():
    from diffusers import DDIMScheduler

    with pytest.raises(ConfigError, match="exactly one of `shape`"):
        gradkit.sample(_unet(), DDIMScheduler(), num_inference_steps=2)
    with pytest.raises(ConfigError, match="`num_inference_steps` must be >= 1"):
        gradkit.sample(_unet(), DDIMScheduler(), shape=(1, 1, 8, 8), num_inference_steps=0)
    with pytest.raises(ArgumentTypeError, match="`scheduler`"):
        gradkit.sample(_unet(), object(), shape=(1, 1, 8, 8))
