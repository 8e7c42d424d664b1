"""Decoder adapters: read a Hugging Face decoder-only causal LM's parts without modifying it.

An adapter names the parts StreamBP needs (embedding, decoder layers and their sub-modules,
final norm, LM head, rotary embedding) and refuses models it cannot stream exactly: unknown
layer types, mixture-of-experts, dropout in training mode, logit soft-capping. The adapter
holds references only; it never replaces, wraps or patches a module.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from gradkit.errors import ConfigError

__all__ = ["DecoderAdapter", "LayerParts", "UnsupportedModelError", "get_adapter", "unwrap_model", "SUPPORTED_FAMILIES"]

#: ``config.model_type`` values whose decoder layer is ``x + attn(norm1(x))``, ``h + mlp(norm2(h))``
#: with RoPE, optional q/k/v bias (Qwen2) and optional per-head q/k RMSNorm (Qwen3).
SUPPORTED_FAMILIES = ("llama", "mistral", "qwen2", "qwen3")
_LAYER_CLASSES = ("LlamaDecoderLayer", "MistralDecoderLayer", "Qwen2DecoderLayer", "Qwen3DecoderLayer")


class UnsupportedModelError(ConfigError):
    """The model cannot be streamed exactly (architecture, dropout, MoE, ...)."""


@dataclass
class LayerParts:
    """The sub-modules of one pre-norm decoder layer."""

    layer: torch.nn.Module
    norm1: torch.nn.Module
    q_proj: torch.nn.Module
    k_proj: torch.nn.Module
    v_proj: torch.nn.Module
    o_proj: torch.nn.Module
    q_norm: torch.nn.Module | None
    k_norm: torch.nn.Module | None
    norm2: torch.nn.Module
    mlp: torch.nn.Module
    num_heads: int
    num_kv_heads: int
    head_dim: int
    scaling: float
    sliding_window: int | None

    def params(self, *modules: torch.nn.Module | None) -> list[torch.nn.Parameter]:
        out: list[torch.nn.Parameter] = []
        seen: set[int] = set()
        for m in modules:
            if m is None:
                continue
            for p in m.parameters():
                if p.requires_grad and id(p) not in seen:
                    seen.add(id(p))
                    out.append(p)
        return out

    @property
    def q_side_params(self) -> list[torch.nn.Parameter]:
        return self.params(self.norm1, self.q_proj, self.q_norm)

    @property
    def post_params(self) -> list[torch.nn.Parameter]:
        return self.params(self.o_proj, self.norm2, self.mlp)

    @property
    def kv_params(self) -> list[torch.nn.Parameter]:
        return self.params(self.norm1, self.k_proj, self.v_proj, self.k_norm)


@dataclass
class DecoderAdapter:
    """Parts of a decoder-only causal LM, in execution order."""

    model: torch.nn.Module
    family: str
    embed: torch.nn.Module
    layers: list[LayerParts]
    final_norm: torch.nn.Module
    lm_head: torch.nn.Module
    rotary: torch.nn.Module

    @property
    def head_params(self) -> list[torch.nn.Parameter]:
        return LayerParts.params(None, self.final_norm, self.lm_head)  # type: ignore[arg-type]

    @property
    def embed_params(self) -> list[torch.nn.Parameter]:
        return LayerParts.params(None, self.embed)  # type: ignore[arg-type]

    @property
    def dtype(self) -> torch.dtype:
        return next(self.final_norm.parameters()).dtype


def unwrap_model(model: Any) -> torch.nn.Module:
    """Strip DDP / accelerate wrappers (``.module``) and PEFT wrappers (``get_base_model()``)."""
    seen = 0
    while seen < 8:
        seen += 1
        if isinstance(model, torch.nn.parallel.DistributedDataParallel):
            model = model.module
            continue
        if hasattr(model, "get_base_model") and callable(model.get_base_model) and type(model).__name__.startswith("Peft"):
            model = model.get_base_model()
            continue
        break
    return model


def _fail(msg: str) -> UnsupportedModelError:
    return UnsupportedModelError(f"StreamBP cannot stream this model: {msg}")


def get_adapter(model: Any) -> DecoderAdapter:
    """Build the adapter for ``model`` or raise :class:`UnsupportedModelError` (a ConfigError)."""
    m = unwrap_model(model)
    if not isinstance(m, torch.nn.Module):
        raise ConfigError(f"`model` must be a torch.nn.Module, got {type(model).__name__}")
    cfg = getattr(m, "config", None)
    family = getattr(cfg, "model_type", None)
    if family not in SUPPORTED_FAMILIES:
        raise _fail(
            f"model_type {family!r} ({type(m).__name__}) is not supported; supported families are "
            f"{list(SUPPORTED_FAMILIES)} (Hugging Face *ForCausalLM models). Use plain autograd for others."
        )
    for key in ("num_experts", "num_local_experts", "n_routed_experts"):
        if getattr(cfg, key, None):
            raise _fail(f"mixture-of-experts layers (config.{key}={getattr(cfg, key)}) are not supported")
    if getattr(cfg, "final_logit_softcapping", None) or getattr(cfg, "attn_logit_softcapping", None):
        raise _fail("logit soft-capping is not supported")
    base = getattr(m, "model", None)
    lm_head = getattr(m, "lm_head", None)
    if base is None or lm_head is None:
        raise _fail(f"{type(m).__name__} has no `.model` backbone and `.lm_head` (pass the *ForCausalLM model)")
    for attr in ("embed_tokens", "layers", "norm", "rotary_emb"):
        if not hasattr(base, attr):
            raise _fail(f"backbone {type(base).__name__} lacks `.{attr}`")
    n_layers = getattr(cfg, "num_hidden_layers", len(base.layers))
    layers: list[LayerParts] = []
    for i, layer in enumerate(list(base.layers)[:n_layers]):
        cls = type(layer).__name__
        if cls not in _LAYER_CLASSES:
            raise _fail(f"layer {i} is a {cls}; known layer types are {list(_LAYER_CLASSES)}")
        attn = layer.self_attn
        hd = int(attn.head_dim)
        hq = attn.q_proj.out_features // hd if hasattr(attn.q_proj, "out_features") else cfg.num_attention_heads
        hkv = cfg.num_key_value_heads
        layers.append(
            LayerParts(
                layer=layer,
                norm1=layer.input_layernorm,
                q_proj=attn.q_proj,
                k_proj=attn.k_proj,
                v_proj=attn.v_proj,
                o_proj=attn.o_proj,
                q_norm=getattr(attn, "q_norm", None),
                k_norm=getattr(attn, "k_norm", None),
                norm2=layer.post_attention_layernorm,
                mlp=layer.mlp,
                num_heads=int(hq),
                num_kv_heads=int(hkv),
                head_dim=hd,
                scaling=float(attn.scaling),
                sliding_window=getattr(attn, "sliding_window", None)
                if family != "mistral"
                else getattr(cfg, "sliding_window", None),
            )
        )
    return DecoderAdapter(
        model=m, family=family, embed=base.embed_tokens, layers=layers, final_norm=base.norm,
        lm_head=lm_head, rotary=base.rotary_emb,
    )


def check_trainable_state(adapter: DecoderAdapter) -> None:
    """Refuse dropout that would be active (training mode and p > 0)."""
    cfg = adapter.model.config
    if adapter.model.training:
        for key in ("attention_dropout", "hidden_dropout", "resid_pdrop", "embd_pdrop"):
            p = getattr(cfg, key, 0.0) or 0.0
            if p > 0:
                raise _fail(
                    f"config.{key}={p} with the model in training mode: dropout re-drawn per chunk is not exact; "
                    "set it to 0 or call model.eval()"
                )
        for mod in adapter.model.modules():
            if isinstance(mod, torch.nn.Dropout) and mod.p > 0:
                raise _fail(f"an active nn.Dropout(p={mod.p}) is in the model; set p=0 or call model.eval()")
