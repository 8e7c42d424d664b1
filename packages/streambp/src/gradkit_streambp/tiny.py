"""Tiny random Hugging Face causal LMs and batches for tests, demos and benchmarks (no downloads)."""

from __future__ import annotations

from typing import Any

import torch

__all__ = ["enable_checkpointing", "tiny_causal_lm", "use_exact_rmsnorm", "random_batch", "oracle_loss_and_grads", "max_rel_error"]


def tiny_causal_lm(family: str = "llama", *, vocab: int = 97, hidden: int = 64, intermediate: int = 128, layers: int = 2,
                   heads: int = 4, kv_heads: int = 2, head_dim: int = 16, tied: bool = False,
                   dtype: torch.dtype = torch.float32, seed: int = 0, **extra: Any) -> torch.nn.Module:
    """A randomly initialised ``*ForCausalLM`` of ``family`` (llama, mistral, qwen2, qwen3) with SDPA attention."""
    import transformers as tf

    classes = {
        "llama": (tf.LlamaConfig, tf.LlamaForCausalLM),
        "mistral": (tf.MistralConfig, tf.MistralForCausalLM),
        "qwen2": (tf.Qwen2Config, tf.Qwen2ForCausalLM),
        "qwen3": (tf.Qwen3Config, tf.Qwen3ForCausalLM),
    }
    cfg_cls, model_cls = classes[family]
    kw: dict[str, Any] = dict(vocab_size=vocab, hidden_size=hidden, intermediate_size=intermediate,
                              num_hidden_layers=layers, num_attention_heads=heads, num_key_value_heads=kv_heads,
                              head_dim=head_dim, tie_word_embeddings=tied, max_position_embeddings=1 << 16)
    if family == "mistral":
        kw["sliding_window"] = None
    kw.update(extra)
    cfg = cfg_cls(**kw)
    cfg._attn_implementation = "sdpa"
    torch.manual_seed(seed)
    model = model_cls(cfg).to(dtype)
    model.train()
    return model


class _ExactRMSNorm(torch.nn.Module):
    """RMSNorm computed in the input dtype (Hugging Face's upcasts to float32, which caps float64 tests at ~1e-7)."""

    def __init__(self, weight: torch.nn.Parameter, eps: float) -> None:
        super().__init__()
        self.weight = weight
        self.variance_epsilon = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.weight * (x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.variance_epsilon))


def use_exact_rmsnorm(model: torch.nn.Module) -> torch.nn.Module:
    """Test utility: replace every ``*RMSNorm`` child by a same-weight norm that keeps the input dtype."""
    for mod in list(model.modules()):
        for name, child in list(mod.named_children()):
            if type(child).__name__.endswith("RMSNorm") and hasattr(child, "variance_epsilon"):
                setattr(mod, name, _ExactRMSNorm(child.weight, child.variance_epsilon))
    return model


def random_batch(B: int = 2, T: int = 33, *, vocab: int = 97, seed: int = 1, padding: str = "right", pad: int = 5,
                 prompt: int = 0) -> dict[str, torch.Tensor]:
    """Random token ids with ``attention_mask`` (right/left/none padding of ``pad`` tokens on row 0 / row 1)
    and ``labels`` (-100 at padding and the first ``prompt`` positions of the last row)."""
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(0, vocab, (B, T), generator=g)
    am = torch.ones(B, T, dtype=torch.long)
    if padding == "right":
        am[0, T - pad:] = 0
    elif padding == "left":
        am[min(1, B - 1), :pad] = 0
    elif padding == "both":
        am[0, T - pad:] = 0
        am[min(1, B - 1), :pad] = 0
    labels = ids.masked_fill(am == 0, -100)
    if prompt:
        labels[B - 1, :prompt] = -100
    return {"input_ids": ids, "attention_mask": am, "labels": labels}


def oracle_loss_and_grads(model: torch.nn.Module, batch: dict, objective: Any, *, normalizer: float | None = None,
                          scale: float = 1.0) -> torch.Tensor:
    """Plain autograd: ``(objective(model(**inputs), batch) * scale).backward()``; returns the detached loss."""
    kw = {k: batch[k] for k in ("input_ids", "attention_mask", "position_ids") if k in batch}
    loss = objective(model(**kw), batch, normalizer=normalizer)
    (loss * scale).backward()
    return loss.detach()


def max_rel_error(a: torch.nn.Module, b: torch.nn.Module) -> tuple[float, str]:
    """Largest ``||g_a - g_b|| / ||g_a||`` over parameters (and its name); grads must be present in both or neither."""
    worst, where = 0.0, ""
    pb = dict(b.named_parameters())
    for name, p in a.named_parameters():
        q = pb[name]
        if p.grad is None or q.grad is None:
            if (p.grad is None) != (q.grad is None):
                return float("inf"), f"{name} (grad present in only one model)"
            continue
        den = p.grad.double().norm().item()
        err = (p.grad.double() - q.grad.double()).norm().item()
        rel = err / den if den > 0 else err
        if rel > worst:
            worst, where = rel, name
    return worst, where


def enable_checkpointing(model: torch.nn.Module) -> torch.nn.Module:
    """Hugging Face activation (gradient) checkpointing, non-reentrant, without deprecation warnings."""
    fn = getattr(model, "activation_checkpointing_enable", None)
    if fn is not None:
        fn(activation_checkpointing_kwargs={"use_reentrant": False})
    else:  # transformers < 5
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    model.config.use_cache = False
    return model
