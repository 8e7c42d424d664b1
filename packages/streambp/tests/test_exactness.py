"""StreamBP vs plain autograd on tiny random models: gradients, loss values, determinism."""

from __future__ import annotations

import copy

import gradkit.objectives as O
import pytest
import torch
from gradkit_streambp import chunked_token_logprobs, stream_backward
from gradkit_streambp.tiny import max_rel_error, oracle_loss_and_grads, random_batch, tiny_causal_lm, use_exact_rmsnorm

F64_TOL = 1e-10  # float64 with norms in float64 (observed ~1e-15)
F32_TOL = 1e-5   # float32 (observed ~1e-6)


def pair(family="llama", dtype=torch.float64, tied=False, **kw):
    m = tiny_causal_lm(family, dtype=dtype, tied=tied, **kw)
    if dtype == torch.float64:
        use_exact_rmsnorm(m)
    return m, copy.deepcopy(m)


def tol(dtype):
    return F64_TOL if dtype == torch.float64 else F32_TOL


def check(m_ref, m_sb, loss_ref, loss_sb, dtype):
    err, where = max_rel_error(m_ref, m_sb)
    assert err <= tol(dtype), f"gradient rel error {err:.3g} at {where}"
    lt = 1e-12 if dtype == torch.float64 else 2e-6
    assert abs(float(loss_ref) - float(loss_sb)) <= lt * max(1.0, abs(float(loss_ref))), (float(loss_ref), float(loss_sb))
    return err


def grpo_extras(b, dtype, seed=3):
    B, T = b["input_ids"].shape
    g = torch.Generator().manual_seed(seed)
    b["advantages"] = torch.randn(B, generator=g, dtype=dtype)
    b["old_logps"] = torch.randn(B, T, generator=g, dtype=dtype) * 0.3 - 4.6
    b["ref_token_logps"] = torch.randn(B, T, generator=g, dtype=dtype) * 0.3 - 4.6
    return b


@pytest.mark.parametrize("family", ["llama", "mistral", "qwen2", "qwen3"])
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=["f64", "f32"])
def test_sft_families(family, dtype):
    m, s = pair(family, dtype, tied=family in ("qwen2", "mistral"))
    b = random_batch(3, 33, padding="both", prompt=9)
    lr = oracle_loss_and_grads(m, b, O.CausalLMSFT())
    ls = stream_backward(s, b, O.CausalLMSFT(), layer_chunk=7, head_chunk=5)
    check(m, s, lr, ls, dtype)


@pytest.mark.parametrize("layer_chunk,head_chunk", [(1, 1), (7, 5), (17, 17), (40, 100), (4, 16), ("auto", 512)])
def test_chunk_sizes(layer_chunk, head_chunk):
    m, s = pair("llama")
    b = random_batch(2, 17, padding="right", pad=3)
    lr = oracle_loss_and_grads(m, b, O.CausalLMSFT())
    ls = stream_backward(s, b, O.CausalLMSFT(), layer_chunk=layer_chunk, head_chunk=head_chunk)
    check(m, s, lr, ls, torch.float64)


@pytest.mark.parametrize("padding", ["none", "right", "left", "both"])
@pytest.mark.parametrize("tied", [False, True], ids=["untied", "tied"])
def test_padding_and_tying(padding, tied):
    m, s = pair("qwen2", tied=tied)
    b = random_batch(3, 40, padding=padding, pad=7, prompt=12)
    lr = oracle_loss_and_grads(m, b, O.CausalLMSFT())
    ls = stream_backward(s, b, O.CausalLMSFT(), layer_chunk=9, head_chunk=6)
    check(m, s, lr, ls, torch.float64)
    if tied:
        assert s.lm_head.weight is s.model.embed_tokens.weight
        assert s.model.embed_tokens.weight.grad is not None


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=["f64", "f32"])
@pytest.mark.parametrize("loss_type,beta", [("grpo", 0.0), ("grpo", 0.04), ("bnpo", 0.0), ("bnpo", 0.1), ("dr_grpo", 0.0), ("dr_grpo", 0.04)])
def test_grpo(loss_type, beta, dtype):
    obj = O.GRPO(beta=beta, epsilon=0.2, loss_type=loss_type, max_length=40 if loss_type == "dr_grpo" else None)
    m, s = pair("qwen3", dtype)
    b = grpo_extras(random_batch(4, 29, padding="left", pad=6, prompt=10), dtype)
    # make clipping active: ratios exp(logp - old) far from 1 on some tokens
    b["old_logps"][0] += 1.0
    lr = oracle_loss_and_grads(m, b, obj)
    ls = stream_backward(s, b, obj, layer_chunk=8, head_chunk=7)
    check(m, s, lr, ls, dtype)


def test_grpo_without_old_logps():
    obj = O.GRPO(beta=0.0)
    m, s = pair("llama")
    b = grpo_extras(random_batch(2, 21, padding="right", pad=4), torch.float64)
    del b["old_logps"], b["ref_token_logps"]
    check(m, s, oracle_loss_and_grads(m, b, obj), stream_backward(s, b, obj, layer_chunk=5, head_chunk=4), torch.float64)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=["f64", "f32"])
@pytest.mark.parametrize("label_smoothing", [0.0, 0.2])
def test_dpo_precomputed_reference(dtype, label_smoothing):
    obj = O.DPO(beta=0.1, label_smoothing=label_smoothing)
    m, s = pair("llama", dtype)
    b = random_batch(4, 31, padding="both", pad=5, prompt=8)  # 2 pairs
    b["ref_logps"] = torch.tensor([-140.0, -150.0, -145.0, -139.0], dtype=dtype)
    lr = oracle_loss_and_grads(m, b, obj)
    ls = stream_backward(s, b, obj, layer_chunk=6, head_chunk=9)
    check(m, s, lr, ls, dtype)


def test_dpo_reference_model_forward():
    """Reference log-probs from a real (frozen) reference model; StreamBP runs it chunked."""
    m, s = pair("qwen2")
    ref = tiny_causal_lm("qwen2", dtype=torch.float64, seed=5)
    use_exact_rmsnorm(ref)
    ref.requires_grad_(False)
    b = random_batch(2, 25, padding="right", pad=4, prompt=6)
    obj = O.DPO(beta=0.1, ref_model=ref)
    lr = oracle_loss_and_grads(m, b, obj)
    ls = stream_backward(s, b, obj, layer_chunk=6, head_chunk=5)
    check(m, s, lr, ls, torch.float64)
    assert all(p.grad is None for p in ref.parameters())


def test_chunk_without_labels_and_late_label():
    """Head chunks with no valid target and a chunk whose only target is not its first position
    (the reference implementation's per-chunk count bug)."""
    m, s = pair("llama")
    b = random_batch(2, 20, padding="none")
    lab = torch.full_like(b["labels"], -100)
    lab[0, 13] = b["input_ids"][0, 13]  # predicted at position 12: 2nd position of chunk [10, 15)
    lab[0, 19] = b["input_ids"][0, 19]
    lab[1, 8] = b["input_ids"][1, 8]
    b["labels"] = lab
    lr = oracle_loss_and_grads(m, b, O.CausalLMSFT())
    ls = stream_backward(s, b, O.CausalLMSFT(), layer_chunk=3, head_chunk=5)
    check(m, s, lr, ls, torch.float64)


def test_micro_batch_without_any_label():
    m, s = pair("llama")
    b = random_batch(2, 12, padding="none")
    b["labels"] = torch.full_like(b["labels"], -100)
    lr = oracle_loss_and_grads(m, b, O.CausalLMSFT())
    ls = stream_backward(s, b, O.CausalLMSFT(), layer_chunk=5, head_chunk=5)
    assert float(lr) == 0.0 and float(ls) == 0.0
    for p in s.parameters():
        assert p.grad is None or torch.count_nonzero(p.grad) == 0


@pytest.mark.parametrize("objective", ["sft", "grpo-bnpo"])
def test_gradient_accumulation_three_micro_batches(objective):
    """3 micro-batches with the global normaliser == one big batch."""
    obj = O.CausalLMSFT() if objective == "sft" else O.GRPO(beta=0.04, loss_type="bnpo")
    m, s = pair("qwen3")
    micro = []
    for i, (pad, prompt) in enumerate([("right", 5), ("left", 0), ("both", 11)]):
        b = random_batch(2, 27, padding=pad, pad=3 + i, prompt=prompt, seed=10 + i)
        if objective != "sft":
            grpo_extras(b, torch.float64, seed=20 + i)
        micro.append(b)
    big = {k: torch.cat([b[k] for b in micro]) for k in micro[0]}
    n = sum(obj.count(b) for b in micro)
    lr = oracle_loss_and_grads(m, big, obj)
    total = 0.0
    for b in micro:
        total += float(stream_backward(s, b, obj, normalizer=n, layer_chunk=10, head_chunk=8))
    check(m, s, lr, total, torch.float64)


def test_grad_scale_and_existing_grads_are_added():
    m, s = pair("llama")
    b1 = random_batch(2, 15, seed=1)
    b2 = random_batch(2, 15, seed=2, padding="left")
    oracle_loss_and_grads(m, b1, O.CausalLMSFT(), scale=0.5)
    oracle_loss_and_grads(m, b2, O.CausalLMSFT(), scale=0.5)
    stream_backward(s, b1, O.CausalLMSFT(), grad_scale=0.5, layer_chunk=4, head_chunk=4)
    stream_backward(s, b2, O.CausalLMSFT(), grad_scale=0.5, layer_chunk=4, head_chunk=4)
    err, where = max_rel_error(m, s)
    assert err <= F64_TOL, (err, where)


def test_frozen_parameters_get_no_grad():
    m, s = pair("llama")
    for mod in (m, s):
        mod.model.embed_tokens.requires_grad_(False)
        mod.model.layers[0].self_attn.k_proj.requires_grad_(False)
        mod.model.layers[1].mlp.requires_grad_(False)
    b = random_batch(2, 19, padding="both")
    check(m, s, oracle_loss_and_grads(m, b, O.CausalLMSFT()),
          stream_backward(s, b, O.CausalLMSFT(), layer_chunk=6, head_chunk=6), torch.float64)
    assert s.model.embed_tokens.weight.grad is None
    assert s.model.layers[0].self_attn.k_proj.weight.grad is None
    assert s.model.layers[0].self_attn.q_proj.weight.grad is not None


def test_bitwise_deterministic():
    m = tiny_causal_lm("qwen3", dtype=torch.float32)
    a, c = copy.deepcopy(m), copy.deepcopy(m)
    b = random_batch(2, 30, padding="both", prompt=5)
    la = stream_backward(a, b, O.CausalLMSFT(), layer_chunk=7, head_chunk=5)
    lc = stream_backward(c, b, O.CausalLMSFT(), layer_chunk=7, head_chunk=5)
    assert torch.equal(la, lc)
    for p, q in zip(a.parameters(), c.parameters()):
        assert torch.equal(p.grad, q.grad)


def test_chunked_token_logprobs_match_full_logits():
    m = tiny_causal_lm("qwen2", dtype=torch.float64)
    b = random_batch(3, 23, padding="both", prompt=4)
    with torch.no_grad():
        full = O.token_logps(m(input_ids=b["input_ids"], attention_mask=b["attention_mask"]).logits,
                             O.shift_labels(b["labels"]))
    got = chunked_token_logprobs(m, b, head_chunk=4, layer_chunk=5)
    assert got.shape == full.shape
    assert torch.allclose(got, full, rtol=0, atol=1e-6)  # stock HF RMSNorm upcasts to f32 in both


def test_no_full_mask_or_full_logits_tensor():
    """No op output has a T x T trailing block or holds B x T x V logits (chunks of 16, T=80)."""
    from torch.utils._python_dispatch import TorchDispatchMode

    B, T, V = 2, 80, 97
    seen: list[tuple[int, ...]] = []

    class Spy(TorchDispatchMode):
        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            out = func(*args, **(kwargs or {}))
            for o in out if isinstance(out, (tuple, list)) else [out]:
                if isinstance(o, torch.Tensor):
                    seen.append(tuple(o.shape))
            return out

    m = tiny_causal_lm("llama", dtype=torch.float32)
    b = random_batch(B, T, padding="both", pad=9)
    with Spy():
        stream_backward(m, b, O.CausalLMSFT(), layer_chunk=16, head_chunk=16)
    assert seen
    assert not [s for s in seen if len(s) >= 2 and s[-1] == T and s[-2] == T], "a T x T tensor was built"
    full_logits = B * T * V
    assert max(torch.Size(s).numel() for s in seen) < full_logits


def test_bfloat16_is_as_close_to_float64_as_bf16_autograd():
    """Paper Table 6's claim on a tiny model: bf16 StreamBP is about as accurate as bf16 standard BP."""
    m = tiny_causal_lm("qwen3", dtype=torch.float32)
    ref = use_exact_rmsnorm(copy.deepcopy(m).double())
    a = copy.deepcopy(m).to(torch.bfloat16)
    s = copy.deepcopy(a)
    b = random_batch(2, 33, padding="both", prompt=5)
    oracle_loss_and_grads(ref, b, O.CausalLMSFT())
    oracle_loss_and_grads(a, b, O.CausalLMSFT())
    stream_backward(s, b, O.CausalLMSFT(), layer_chunk=7, head_chunk=5)
    err_plain, _ = max_rel_error(ref, a)
    err_stream, where = max_rel_error(ref, s)
    assert err_stream <= 2.0 * err_plain, (err_stream, err_plain, where)
    assert all(p.grad.dtype == torch.bfloat16 for p in s.parameters())


def test_explicit_position_ids_left_padding():
    m, s = pair("llama")
    b = random_batch(3, 26, padding="left", pad=8, prompt=3)
    b["position_ids"] = (b["attention_mask"].cumsum(-1) - 1).clamp(min=0)
    lr = oracle_loss_and_grads(m, b, O.CausalLMSFT())
    ls = stream_backward(s, b, O.CausalLMSFT(), layer_chunk=5, head_chunk=7)
    check(m, s, lr, ls, torch.float64)


@pytest.mark.filterwarnings("ignore::FutureWarning")  # peft calls transformers' deprecated checkpointing query
def test_peft_lora_adapters():
    """LoRA on attention and MLP projections: exact LoRA gradients, none for the frozen base weights."""
    peft = pytest.importorskip("peft")
    base = use_exact_rmsnorm(tiny_causal_lm("qwen2", dtype=torch.float64))
    cfg = peft.LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "k_proj", "v_proj", "o_proj", "up_proj"],
                          lora_dropout=0.0)
    m = peft.get_peft_model(base, cfg)
    for n, p in m.named_parameters():
        if "lora_B" in n:
            torch.nn.init.normal_(p, std=0.1)  # non-zero B so every LoRA factor gets a gradient
    s = copy.deepcopy(m)
    b = random_batch(2, 23, padding="both", prompt=4)
    lr = oracle_loss_and_grads(m, b, O.CausalLMSFT())
    ls = stream_backward(s, b, O.CausalLMSFT(), layer_chunk=5, head_chunk=4)
    check(m, s, lr, ls, torch.float64)
    trainable = [n for n, p in s.named_parameters() if p.requires_grad]
    assert trainable and all("lora_" in n for n in trainable)
    assert all((p.grad is not None) == p.requires_grad for p in s.parameters())
