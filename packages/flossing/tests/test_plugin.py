"""The plugin inside gradkit.train: contract, exact task gradients, phases, loss term, reports."""

import gradkit
import pytest
import torch
from gradkit.errors import ConfigError
from gradkit.testing import PluginContract
from gradkit_flossing import DelayTaskRNN, FlossingConfig, delayed_copy
from gradkit_flossing.tasks import masked_bce
from gradkit_flossing.transform import FlossingTransform, batch_inputs

SMALL = dict(k=4, horizon=12, transient=2, lr=1e-2, log_every=1, log_k=2)


class TestFlossingContract(PluginContract):
    plugin_name = "flossing"
    distribution = "gradkit-flossing"
    transform_names = ("flossing",)
    demo_names = ("flossing",)

    def make_model(self, transform_name):
        return DelayTaskRNN(6, generator=torch.Generator().manual_seed(0)).double()

    def make_inputs(self, transform_name):
        return (torch.rand(2, 9, 1, dtype=torch.float64),)

    def misuse_cases(self):
        return [
            lambda: FlossingConfig(k=0),
            lambda: FlossingConfig(mode="sometimes"),
            lambda: gradkit.transforms.create("flossing", k=7).attach(DelayTaskRNN(6)),  # k > N
            lambda: gradkit.transforms.create("flossing").attach(torch.nn.Linear(2, 2)),  # no recurrent module
        ]


def _data(n=8, delay=3, length=10, seed=0):
    g = torch.Generator().manual_seed(seed)
    return [delayed_copy(4, length, delay, generator=g) for _ in range(n)]


def _objective(outputs, batch, normalizer=None):
    return masked_bce(outputs, batch[1], batch[2])


def _train(model, transforms=None, steps=6, **kw):
    return gradkit.train(model, _data(), objective=_objective, optimizer=torch.optim.SGD(model.parameters(), lr=0.1),
                         steps=steps, transforms=transforms, progress=False, seed=0, **kw)


def _model():
    return DelayTaskRNN(8, generator=torch.Generator().manual_seed(1))


def test_mode_off_and_no_phases_leave_training_bitwise_identical():
    a, b = _model(), _model()
    sa = _train(a)
    sb = _train(b, [("flossing", dict(SMALL, mode="off"))])
    for pa, pb in zip(a.parameters(), b.parameters()):
        assert torch.equal(pa, pb)
    assert [h["loss"] for h in sa["history"]] == [h["loss"] for h in sb["history"]]
    assert "floss/lambda_1" in sb["history"][0]
    assert sb["history"][0]["floss/log10_cond_10"] > 0  # horizon 12 - transient 2 steps
    assert sb["history"][0]["floss/grad_norm_delay_12"] > 0
    assert sb["flossing"]["updates"] == 0


def test_phases_run_on_schedule_and_task_gradient_stays_plain():
    m = _model()
    t = FlossingTransform(config=FlossingConfig(**SMALL, pre_steps=3, inter_every=2, inter_steps=2, inter_max=2))
    s = _train(m, [t], steps=6)
    # pre (3) + episodes at steps 2 and 4 (2 each)
    assert s["flossing"]["updates"] == 7 and s["flossing"]["episodes"] == 2
    assert set(s["flossing"]["spectra"]) >= {"pre/before", "pre/after", "inter1/after", "inter2/after"}
    assert "term/floss" not in s["history"][0]
    # the flossing Adam never shares state with the task optimiser
    assert t.flosser is None  # detached after the run


def test_flossing_phase_between_steps_does_not_touch_task_grads():
    # same weights, same batch: the task grad after a flossing phase equals plain autograd at the
    # post-flossing weights
    m = _model()
    t = FlossingTransform(config=FlossingConfig(**SMALL, pre_steps=2, inter_every=0))
    grads = {}

    class Spy:
        @gradkit.hookimpl
        def gradkit_grads_ready(self, step):
            grads["flossed"] = [p.grad.clone() for p in step.model.parameters()]
            grads["weights"] = [p.detach().clone() for p in step.model.parameters()]

    spy = Spy()
    gradkit.register(spy, name="spy")
    try:
        _train(m, [t], steps=1)
    finally:
        gradkit.unregister(spy)
    ref = _model()
    with torch.no_grad():
        for p, w in zip(ref.parameters(), grads["weights"]):
            p.copy_(w)
    batch = _data()[0]
    masked_bce(ref(batch[0]), batch[1], batch[2]).backward()
    for p, g in zip(ref.parameters(), grads["flossed"]):
        torch.testing.assert_close(p.grad, g, rtol=1e-6, atol=1e-7)


def test_regularizer_mode_adds_the_floss_term():
    m = _model()
    s = _train(m, [("flossing", dict(SMALL, mode="regularizer", beta=0.5, reg_every=2))], steps=4)
    hist = s["history"]
    assert "term/floss" in hist[0] and "term/floss" not in hist[1] and "term/floss" in hist[2]
    assert hist[0]["term/floss"] > 0
    assert s["flossing"]["updates"] == 0


def test_regularizer_gradient_is_task_plus_beta_floss():
    from gradkit_flossing.lyapunov import flossing_loss
    from gradkit_flossing.schedule import Flosser

    m = _model().double()
    batch = tuple(b.double() if b.is_floating_point() else b for b in _data()[0])
    t = FlossingTransform(config=FlossingConfig(**SMALL, mode="regularizer", beta=0.5, seed=3))
    h = t.attach(m)
    try:
        step = type("S", (), {"index": 0, "batch": batch})()
        term = t.loss_term(step)
    finally:
        h.remove()
    f = Flosser(m, FlossingConfig(**SMALL, seed=3))
    from gradkit_flossing.schedule import crop_inputs

    xs = crop_inputs(batch[0], 1, 12, batch_first=True, generator=f.generator)
    ref = flossing_loss(f.exponents(xs))
    assert term.weight == 0.5 and term.name == "floss"
    torch.testing.assert_close(term.value, ref, rtol=1e-12, atol=1e-12)


def test_bernoulli_sampler_pre_flosses_at_loop_start():
    m = _model()
    s = _train(m, [("flossing", dict(SMALL, sampler="bernoulli", pre_steps=2, inter_every=0))], steps=1)
    assert s["flossing"]["updates"] == 2


def test_batch_inputs_errors():
    assert batch_inputs({"x": torch.zeros(1)}).shape == (1,)
    with pytest.raises(ConfigError, match="inputs"):
        batch_inputs({"y": 1})


def _ddp_worker():
    import torch.distributed as dist
    from accelerate import Accelerator

    acc = Accelerator(cpu=True)
    rank = acc.process_index
    m = DelayTaskRNN(8, generator=torch.Generator().manual_seed(1))
    data = _data(seed=10 + rank)  # different inputs per rank
    cfg = dict(SMALL, pre_steps=2, inter_every=2, inter_steps=1, inter_max=1, seed=rank)  # different flossing RNG too
    gradkit.train(m, data, objective=_objective, optimizer=torch.optim.SGD(m.parameters(), lr=0.1), steps=3,
                  transforms=[("flossing", cfg)], progress=False, accelerator=acc)
    flat = torch.cat([p.detach().flatten() for p in m.parameters()])
    gathered = [torch.zeros_like(flat) for _ in range(2)]
    dist.all_gather(gathered, flat)
    assert torch.equal(gathered[0], gathered[1]), "ranks diverged"


@pytest.mark.slow  # ~60 s on the shared CPU (two spawned processes, gloo)
def test_flossing_stays_in_sync_across_ddp_ranks():
    from accelerate import debug_launcher

    debug_launcher(_ddp_worker, num_processes=2)


def test_resume_skips_phases_already_done():
    t = FlossingTransform(config=FlossingConfig(**SMALL, pre_steps=3, inter_every=2, inter_steps=1, inter_max=3))
    h = t.attach(_model())
    try:
        t.loop_start(5)  # resumed before step 5: pre and the episodes at steps 2 and 4 are done
        assert t.pre_done and t.episodes == 2
        t.loop_start(0)
        assert not t.pre_done and t.episodes == 0
    finally:
        h.remove()
