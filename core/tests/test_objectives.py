import pytest
import torch
import torch.nn.functional as F
from _models import TinyLM, lm_batches
from conftest import tiny_llama
from gradkit.errors import ConfigError
from gradkit.objectives import DPO, GRPO, CausalLMSFT, shift_labels, token_logps


def _chunked(objective, logits, batch, bounds, normalizer=None):
    ctx = objective.prepare(batch, normalizer)
    sums = torch.zeros(logits.shape[0], dtype=logits.dtype)
    for a, b in zip(bounds[:-1], bounds[1:]):
        lp = token_logps(logits[:, a:b], ctx.targets[:, a:b])
        sums = sums + ctx.token_loss(lp, slice(a, b)).sum(1)
    return ctx.outer(sums)


def test_sft_equals_hugging_face_loss_with_padding_and_prompt_mask():
    model = tiny_llama()
    ids = torch.randint(0, 61, (3, 11), generator=torch.Generator().manual_seed(1))
    mask = torch.ones_like(ids)
    mask[1, 8:] = 0
    labels = ids.masked_fill(mask == 0, -100)
    labels[:, :4] = -100
    batch = {"input_ids": ids, "attention_mask": mask, "labels": labels}
    out = model(input_ids=ids, attention_mask=mask, labels=labels)
    ours = CausalLMSFT()(out, batch)
    # HF computes its loss in float32 even for float64 logits, hence the float32 tolerance
    torch.testing.assert_close(ours, out.loss.double(), rtol=2e-6, atol=0)


@pytest.mark.parametrize("objective", [CausalLMSFT(), GRPO(loss_type="grpo"), GRPO(loss_type="bnpo"),
                                       GRPO(loss_type="dr_grpo", beta=0.04)], ids=["sft", "grpo", "bnpo", "dr_grpo_kl"])
def test_chunked_evaluation_equals_full(objective):
    torch.manual_seed(0)
    batch = lm_batches(3)[2]
    B, T = batch["input_ids"].shape
    batch["advantages"] = torch.randn(B, dtype=torch.float64)
    batch["old_logps"] = -torch.rand(B, T, dtype=torch.float64)
    batch["ref_token_logps"] = -torch.rand(B, T, dtype=torch.float64)
    logits = torch.randn(B, T, 23, dtype=torch.float64, requires_grad=True)
    full = objective(logits, batch)
    (g_full,) = torch.autograd.grad(full, logits)
    chunked = _chunked(objective, logits, batch, [0, 3, 4, T])
    (g_chunk,) = torch.autograd.grad(chunked, logits)
    torch.testing.assert_close(chunked, full, rtol=1e-13, atol=1e-15)
    torch.testing.assert_close(g_chunk, g_full, rtol=1e-12, atol=1e-15)


def test_sft_global_normaliser_sums_micro_batches_to_big_batch_mean():
    model = TinyLM().double()
    batches = lm_batches(3)
    sft = CausalLMSFT()
    n = sum(sft.count(b) for b in batches)
    total = sum(sft(model(b["input_ids"], b["attention_mask"]), b, normalizer=n) for b in batches)
    nll = []
    for b in batches:
        logits = model(b["input_ids"], b["attention_mask"])
        t = shift_labels(b["labels"])
        nll.append(F.cross_entropy(logits.reshape(-1, 23), t.reshape(-1), reduction="sum", ignore_index=-100))
    torch.testing.assert_close(total, sum(nll) / n, rtol=1e-13, atol=0)


def test_sft_micro_batch_without_targets_gives_zero_not_nan():
    b = lm_batches(1)[0]
    b["labels"] = torch.full_like(b["labels"], -100)
    logits = torch.randn(*b["input_ids"].shape, 23, requires_grad=True)
    loss = CausalLMSFT()(logits, b)
    assert loss.item() == 0.0
    loss.backward()
    assert torch.all(logits.grad == 0)


def test_grpo_normalisers_match_explicit_formulas():
    torch.manual_seed(0)
    b = lm_batches(2)[1]
    B, T = b["input_ids"].shape
    b["advantages"] = torch.randn(B, dtype=torch.float64)
    logits = torch.randn(B, T, 23, dtype=torch.float64)
    t = shift_labels(b["labels"])
    m = (t != -100).double()
    lp = token_logps(logits, t)
    per = -b["advantages"].unsqueeze(1) * torch.ones_like(lp)  # ratio == 1 with old = current
    expect = {
        "grpo": ((per * m).sum(1) / m.sum(1)).mean(),
        "bnpo": (per * m).sum() / m.sum(),
        "dr_grpo": (per * m).sum() / (B * 40),
    }
    for lt, want in expect.items():
        got = GRPO(loss_type=lt, max_length=40)(logits, b)
        torch.testing.assert_close(got, want, rtol=1e-13, atol=1e-15)


def test_grpo_kl_term_and_clipping():
    b = lm_batches(1)[0]
    B, T = b["input_ids"].shape
    b["advantages"] = torch.tensor([1.0, -1.0], dtype=torch.float64)
    logits = torch.randn(B, T, 23, dtype=torch.float64)
    t = shift_labels(b["labels"])
    m = t != -100
    lp = token_logps(logits, t)
    b["old_logps"] = lp - 1.0  # ratio e > 1 + eps: clipped for A > 0
    b["ref_token_logps"] = lp + 0.3
    got = GRPO(beta=0.1, epsilon=0.2, loss_type="bnpo")(logits, b)
    ratio = torch.full_like(lp, torch.e)
    a = b["advantages"].unsqueeze(1)
    per = -torch.minimum(ratio * a, ratio.clamp(0.8, 1.2) * a) + 0.1 * (torch.exp(torch.tensor(0.3)) - 0.3 - 1)
    want = (per * m).sum() / m.sum()
    torch.testing.assert_close(got, want.to(got.dtype), rtol=1e-7, atol=1e-9)


def test_dpo_matches_formula_with_reference_model():
    torch.manual_seed(0)
    policy, ref = TinyLM().double(), TinyLM().double()
    b = lm_batches(1)[0]
    b = {k: torch.cat([v, v.flip(0)]) for k, v in b.items()}  # 2 pairs: chosen rows then rejected rows
    dpo = DPO(beta=0.5, ref_model=ref)
    loss = dpo(policy(b["input_ids"], b["attention_mask"]), b)
    t = shift_labels(b["labels"])
    s_pi = token_logps(policy(b["input_ids"], b["attention_mask"]), t).sum(1)
    s_ref = token_logps(ref(b["input_ids"], b["attention_mask"]), t).sum(1)
    z = 0.5 * ((s_pi[:2] - s_ref[:2]) - (s_pi[2:] - s_ref[2:]))
    torch.testing.assert_close(loss, -F.logsigmoid(z).mean(), rtol=1e-13, atol=0)
    # precomputed reference log-probs give the same loss; chunked evaluation too
    b2 = dict(b, ref_logps=s_ref)
    logits = policy(b["input_ids"], b["attention_mask"])
    torch.testing.assert_close(DPO(beta=0.5)(logits, b2), loss)
    torch.testing.assert_close(_chunked(DPO(beta=0.5), logits, b2, [0, 2, 7, logits.shape[1]]), loss, rtol=1e-13, atol=0)


def test_objective_bad_input_is_clear():
    b = lm_batches(1)[0]
    with pytest.raises(ConfigError, match="labels.*same shape as input_ids"):
        CausalLMSFT()(torch.randn(2, 5, 23), dict(b, labels=b["labels"][:, :-1]))
    with pytest.raises(ConfigError, match="advantages"):
        GRPO()(torch.randn(2, 5, 23), b)
    with pytest.raises(ConfigError, match="ref_token_logps"):
        GRPO(beta=0.1)(torch.randn(2, 5, 23), dict(b, advantages=torch.zeros(2)))
    with pytest.raises(ConfigError, match="loss_type"):
        GRPO(loss_type="nope")
    with pytest.raises(ConfigError, match="even"):
        DPO()(torch.randn(3, 5, 23), {"input_ids": torch.zeros(3, 5, dtype=torch.long), "ref_logps": torch.zeros(3)})
