import json

import gradkit
import pytest
import torch
from _models import TinyLM, lm_batches
from gradkit.context import LossTerm
from gradkit.errors import ArgumentTypeError, ConfigError
from gradkit.objectives import CausalLMSFT, ClassificationCE


def _mlp(seed=0):
    torch.manual_seed(seed)
    return torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.Tanh(), torch.nn.Linear(8, 3)).double()


def _cls_batches(n=4, seed=0):
    g = torch.Generator().manual_seed(seed)
    return [(torch.randn(5, 4, generator=g, dtype=torch.float64), torch.randint(0, 3, (5,), generator=g)) for _ in range(n)]


def test_default_loop_equals_manual_adamw():
    data = _cls_batches()
    model = _mlp()
    summary = gradkit.train(model, data, objective=ClassificationCE(), steps=4, lr=1e-2, progress=False)
    ref = _mlp()
    opt = torch.optim.AdamW(ref.parameters(), lr=1e-2)
    losses = []
    for x, y in data:
        loss = torch.nn.functional.cross_entropy(ref(x), y)
        loss.backward()
        opt.step()
        opt.zero_grad()
        losses.append(loss.item())
    for p, q in zip(model.parameters(), ref.parameters()):
        torch.testing.assert_close(p, q, rtol=1e-12, atol=1e-14)
    assert [h["loss"] for h in summary["history"]] == pytest.approx(losses, rel=1e-12)
    assert summary["steps"] == 4 and summary["history"][0]["grad_norm"] > 0


class _GradCatcher:
    def __init__(self):
        self.grads = []

    @gradkit.hookimpl
    def gradkit_grads_ready(self, step):
        self.grads.append({n: p.grad.clone() for n, p in step.model.named_parameters()})


def test_grad_accumulation_with_global_token_normaliser_is_exact():
    batches = lm_batches(3)
    catcher = _GradCatcher()
    gradkit.register(catcher, name="catcher")
    model = TinyLM().double()
    gradkit.train(model, batches, objective=CausalLMSFT(), steps=1, grad_accum=3, lr=0.0, progress=False)
    # oracle: one big backward of sum(NLL) / (all target tokens)
    ref = TinyLM().double()
    ref.load_state_dict(model.state_dict())  # lr=0: params unchanged
    sft = CausalLMSFT()
    n = sum(sft.count(b) for b in batches)
    total = sum(sft(ref(b["input_ids"], b["attention_mask"]), b, normalizer=n) for b in batches)
    total.backward()
    for name, p in ref.named_parameters():
        torch.testing.assert_close(catcher.grads[0][name], p.grad, rtol=1e-12, atol=1e-15)


def test_user_loss_term_enters_gradient_and_is_reported():
    class L2:
        @gradkit.hookimpl
        def gradkit_loss_terms(self, step, outputs):
            return LossTerm("l2", sum(p.pow(2).sum() for p in step.model.parameters()), weight=0.5)

    catcher = _GradCatcher()
    gradkit.register(L2(), name="l2")
    gradkit.register(catcher, name="catcher")
    data = _cls_batches(1)
    model = _mlp()
    summary = gradkit.train(model, data, objective=ClassificationCE(), steps=1, lr=0.0, progress=False)
    ref = _mlp()
    x, y = data[0]
    l2 = sum(p.pow(2).sum() for p in ref.parameters())
    (torch.nn.functional.cross_entropy(ref(x), y) + 0.5 * l2).backward()
    for name, p in ref.named_parameters():
        torch.testing.assert_close(catcher.grads[0][name], p.grad, rtol=1e-12, atol=1e-15)
    assert summary["history"][0]["term/l2"] == pytest.approx(l2.item())


def test_train_step_can_be_replaced_by_a_plugin():
    class Skip:
        @gradkit.hookimpl
        def gradkit_train_step(self, step):
            from gradkit.context import StepResult

            return StepResult(loss=42.0)

    gradkit.register(Skip(), name="skip")
    model = _mlp()
    before = [p.clone() for p in model.parameters()]
    summary = gradkit.train(model, _cls_batches(1), objective=ClassificationCE(), steps=2, progress=False)
    assert summary["final_loss"] == 42.0
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters()))


def test_checkpoint_resume_equals_uninterrupted(tmp_path):
    data = _cls_batches(6)
    straight = _mlp()
    gradkit.train(straight, data, objective=ClassificationCE(), steps=6, lr=1e-2, progress=False)
    part = _mlp()
    gradkit.train(part, data, objective=ClassificationCE(), steps=3, lr=1e-2, progress=False,
                  checkpoint_dir=tmp_path, checkpoint_every=3)
    resumed = _mlp(seed=123)  # different init: the checkpoint must restore everything
    s = gradkit.train(resumed, data, objective=ClassificationCE(), steps=6, lr=1e-2, progress=False,
                      checkpoint_dir=tmp_path, resume=True)
    assert len(s["history"]) == 6
    for p, q in zip(straight.parameters(), resumed.parameters()):
        torch.testing.assert_close(p, q, rtol=1e-12, atol=1e-14)
    assert json.loads((tmp_path / "step_6" / "gradkit_state.json").read_text())["step"] == 6


def test_mixed_precision_bf16_runs_on_cpu():
    model = torch.nn.Linear(4, 3)
    data = [(torch.randn(5, 4), torch.randint(0, 3, (5,)))]
    s = gradkit.train(model, data, objective=ClassificationCE(), steps=2, mixed_precision="bf16", progress=False)
    assert s["config"]["mixed_precision"] == "bf16" and s["final_loss"] > 0


@pytest.mark.parametrize(
    "kwargs, exc, match",
    [
        ({"model": "nope"}, ArgumentTypeError, "`model` must be a torch.nn.Module"),
        ({"objective": 3}, ArgumentTypeError, "`objective` must be callable"),
        ({"data": torch.zeros(3)}, ArgumentTypeError, "`data` must be an iterable"),
        ({"steps": 0}, ConfigError, "`steps` must be >= 1"),
        ({"steps": 2.5}, ArgumentTypeError, "`steps` must be an int"),
        ({"grad_accum": -1}, ConfigError, "`grad_accum`"),
        ({"mixed_precision": "fp8"}, ConfigError, "`mixed_precision`"),
        ({"optimizer": "adam"}, ArgumentTypeError, "`optimizer`"),
        ({"resume": True}, ConfigError, "checkpoint_dir"),
        ({"transforms": ["no-such"]}, KeyError, "available transforms"),
        ({"data": []}, ConfigError, "no batches"),
    ],
)
def test_bad_arguments_are_named(kwargs, exc, match):
    args = {"model": _mlp(), "data": _cls_batches(1), "objective": ClassificationCE(), "steps": 1, "progress": False}
    args.update(kwargs)
    model, data = args.pop("model"), args.pop("data")
    with pytest.raises(exc, match=match):
        gradkit.train(model, data, **args)


def _ddp_worker(out_path):
    import gradkit
    import torch
    from _models import TinyLM, lm_batches
    from accelerate import Accelerator
    from accelerate.state import AcceleratorState
    from gradkit.objectives import CausalLMSFT

    torch.set_num_threads(1)
    AcceleratorState._reset_state(True)  # forked from the test process: drop its single-process state
    acc = Accelerator(cpu=True)
    assert acc.num_processes == 2
    batches = lm_batches(4)  # rank r takes micro-batches r and r + 2
    mine = [batches[acc.process_index], batches[acc.process_index + 2]]
    torch.manual_seed(0)
    model = TinyLM().double()
    gradkit.train(model, mine, objective=CausalLMSFT(), steps=1, grad_accum=2, lr=1e-2, progress=False, accelerator=acc)
    if acc.is_main_process:
        torch.save({k: v.detach().clone() for k, v in acc.unwrap_model(model).state_dict().items()}, out_path)


def test_two_process_ddp_equals_single_process(tmp_path):
    from accelerate import debug_launcher

    out = tmp_path / "ddp.pt"
    debug_launcher(_ddp_worker, args=(str(out),), num_processes=2)
    ddp_state = torch.load(out)
    torch.manual_seed(0)
    single = TinyLM().double()
    b = lm_batches(4)
    gradkit.train(single, [b[0], b[2], b[1], b[3]], objective=CausalLMSFT(), steps=1, grad_accum=4, lr=1e-2,
                  progress=False)
    for k, v in single.state_dict().items():
        torch.testing.assert_close(ddp_state[k], v, rtol=1e-10, atol=1e-12)


def _reduce_worker(out_path):
    import torch
    from accelerate import Accelerator
    from accelerate.state import AcceleratorState
    from gradkit.loops.train import reduce_gradients

    AcceleratorState._reset_state(True)
    acc = Accelerator(cpu=True)
    r = acc.process_index
    a = torch.nn.Parameter(torch.zeros(3, dtype=torch.float64))
    b = torch.nn.Parameter(torch.zeros(2, 2))
    a.grad = torch.full((3,), float(r + 1), dtype=torch.float64)
    b.grad = torch.full((2, 2), 10.0 * (r + 1))
    reduce_gradients(acc, [a, b])
    if acc.is_main_process:
        torch.save({"a": a.grad, "b": b.grad}, out_path)


def test_reduce_gradients_averages_over_processes(tmp_path):
    from accelerate import debug_launcher

    out = tmp_path / "g.pt"
    debug_launcher(_reduce_worker, args=(str(out),), num_processes=2)
    g = torch.load(out)
    assert torch.equal(g["a"], torch.full((3,), 1.5, dtype=torch.float64))
    assert torch.equal(g["b"], torch.full((2, 2), 15.0))


def test_step_is_last_micro_batch():
    from gradkit.context import Step

    s = Step(loop=None, index=0, micro_batches=[1, 2, 3])
    assert [s.is_last_micro_batch for s.micro_index in range(3)] == [False, False, True]
