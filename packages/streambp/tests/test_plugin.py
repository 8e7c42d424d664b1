"""Plugin wiring: contract tests, gradkit.train with the "streambp" transform, fallback, misuse, 2-process DDP."""

from __future__ import annotations

import copy

import gradkit
import gradkit.objectives as O
import pytest
import torch
from gradkit.errors import ConfigError
from gradkit.testing import PluginContract
from gradkit_streambp import StreamBP, StreamBPConfig, UnsupportedModelError, stream_backward
from gradkit_streambp.tiny import random_batch, tiny_causal_lm, use_exact_rmsnorm


def _tiny():
    return tiny_causal_lm("llama", dtype=torch.float64)


class TinyLM(torch.nn.Module):
    """Not a Hugging Face decoder: StreamBP cannot stream it."""

    def __init__(self):
        super().__init__()
        self.emb = torch.nn.Embedding(97, 16)
        self.out = torch.nn.Linear(16, 97)

    def forward(self, input_ids, attention_mask=None):
        return self.out(self.emb(input_ids))


def _misuse_cases():
    b = random_batch(2, 9)
    return [
        lambda: StreamBPConfig(layer_chunk=0),
        lambda: StreamBPConfig(head_chunk=-3),
        lambda: StreamBPConfig(layer_chunk="big"),
        lambda: gradkit.transforms.create("streambp", head_chunk=0),
        lambda: stream_backward(_tiny(), b, O.CausalLMSFT(), layer_chunk=0),
        lambda: stream_backward(_tiny(), b, O.CausalLMSFT(), head_chunk=0),
        lambda: stream_backward(_tiny(), {**b, "labels": b["labels"][:, :5]}, O.CausalLMSFT()),
        lambda: stream_backward(TinyLM(), b, O.CausalLMSFT()),
        lambda: stream_backward(_tiny(), b, O.ClassificationCE()),
        lambda: stream_backward(tiny_causal_lm("llama", attention_dropout=0.1), b, O.CausalLMSFT()),
        lambda: StreamBP(fallback=False).attach(TinyLM()),
    ]


class TestStreamBPContract(PluginContract):
    plugin_name = "streambp"
    distribution = "gradkit-streambp"
    transform_names = ("streambp",)
    demo_names = ("streambp",)

    def make_model(self, transform_name):
        return tiny_causal_lm("llama", dtype=torch.float32)

    def make_inputs(self, transform_name):
        return (random_batch(2, 11)["input_ids"],)

    def misuse_cases(self):
        return _misuse_cases()


@pytest.mark.parametrize("case", range(len(_misuse_cases())))
def test_misuse_messages_name_the_parameter(case):
    with pytest.raises(ConfigError) as info:
        _misuse_cases()[case]()
    msg = str(info.value)
    assert any(w in msg for w in ("layer_chunk", "head_chunk", "labels", "not supported", "no per-token form",
                                  "dropout", "cannot stream")), msg


def _batches(n, T=19):
    out = []
    for i in range(n):
        b = random_batch(2, T, padding=["right", "left", "both", "none"][i % 4], pad=3, prompt=4, seed=30 + i)
        out.append(b)
    return out


def _train(model, batches, transforms, grad_accum=2, steps=2):
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    return gradkit.train(model, batches, objective=O.CausalLMSFT(), optimizer=opt, steps=steps, grad_accum=grad_accum,
                         transforms=transforms, progress=False)


def test_train_with_streambp_equals_plain_autograd():
    m = use_exact_rmsnorm(_tiny())
    s = copy.deepcopy(m)
    batches = _batches(4)
    plain = _train(m, batches, None)
    streamed = _train(s, batches, [("streambp", {"layer_chunk": 5, "head_chunk": 4})])
    for (n, p), q in zip(m.named_parameters(), s.parameters()):
        torch.testing.assert_close(q, p, rtol=1e-10, atol=1e-12, msg=n)
    for a, b in zip(plain["history"], streamed["history"]):
        assert abs(a["loss"] - b["loss"]) < 1e-10
    h = streamed["history"][-1]
    assert h["streambp/active"] == 1.0 and h["streambp/layer_chunks"] == 4 and h["streambp/head_chunks"] == 5
    assert streamed["streambp"]["active"] is True


def test_unsupported_model_falls_back_with_warning():
    torch.manual_seed(0)
    m = TinyLM().double()
    s = copy.deepcopy(m)
    batches = _batches(2)
    _train(m, batches, None, grad_accum=1)
    with pytest.warns(UserWarning, match="falling back to plain autograd"):
        out = _train(s, batches, ["streambp"], grad_accum=1)
    assert out["streambp"]["active"] is False
    for p, q in zip(m.parameters(), s.parameters()):
        assert torch.equal(p, q)


def test_unsupported_model_raises_without_fallback():
    with pytest.raises(UnsupportedModelError, match="cannot stream"):
        _train(TinyLM(), _batches(1), [("streambp", {"fallback": False})], grad_accum=1, steps=1)


def test_transform_is_inactive_outside_its_loop():
    """Attaching the transform changes nothing about plain forward/backward."""
    m = _tiny()
    ids = random_batch(2, 11)["input_ids"]
    ref = m(input_ids=ids).logits
    t = StreamBP(m, layer_chunk=3)
    with t:
        got = m(input_ids=ids).logits
    assert torch.equal(ref, got)


def _ddp_worker(out_path):
    import gradkit
    import gradkit.objectives as O
    import torch
    from accelerate import Accelerator
    from accelerate.state import AcceleratorState
    from gradkit_streambp.tiny import random_batch, tiny_causal_lm, use_exact_rmsnorm

    torch.set_num_threads(1)
    AcceleratorState._reset_state(True)
    acc = Accelerator(cpu=True)
    assert acc.num_processes == 2
    batches = [random_batch(2, 19, padding=["right", "left", "both", "none"][i], pad=3, prompt=4, seed=30 + i)
               for i in range(4)]
    mine = [batches[acc.process_index], batches[acc.process_index + 2]]
    model = use_exact_rmsnorm(tiny_causal_lm("llama", dtype=torch.float64))
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    summary = gradkit.train(model, mine, objective=O.CausalLMSFT(), optimizer=opt, steps=1, grad_accum=2,
                            transforms=[("streambp", {"layer_chunk": 5, "head_chunk": 4})], progress=False,
                            accelerator=acc)
    assert summary["streambp"]["reductions"] == 1
    if acc.is_main_process:
        torch.save({k: v.detach().clone() for k, v in acc.unwrap_model(model).state_dict().items()}, out_path)


def test_two_process_ddp_equals_single_process(tmp_path):
    from accelerate import debug_launcher

    out = tmp_path / "ddp.pt"
    debug_launcher(_ddp_worker, args=(str(out),), num_processes=2)
    ddp_state = torch.load(out)
    single = use_exact_rmsnorm(_tiny())
    b = _batches(4)
    _train(single, [b[0], b[2], b[1], b[3]], None, grad_accum=4, steps=1)
    for k, v in single.state_dict().items():
        torch.testing.assert_close(ddp_state[k], v, rtol=1e-10, atol=1e-12, msg=k)
