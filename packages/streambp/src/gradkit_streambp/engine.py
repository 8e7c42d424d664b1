"""The StreamBP engine: exact sequence-chunked forward + backward for one micro-batch.

1. Forward without an autograd graph, layer by layer, keeping only each layer's input
   (the checkpoint, B x T x d) and computing attention one query chunk at a time against the
   key prefix (no T x T mask).
2. Head: the final hidden states are processed ``head_chunk`` positions at a time: final norm,
   LM head, token log-probabilities, the objective's per-token weights, and dlogits written in
   place; only one B x chunk x vocab block exists. Nonlinear objectives (DPO) take a first
   no-grad pass to get per-sequence sums and their coefficients.
3. Layers last to first: recompute K/V once per layer; pass A walks query chunks (norm1, q,
   prefix attention, o_proj, MLP), adding into dK/dV over the causal prefix; pass B pushes
   dK/dV through RoPE, k-norm, k/v projections and norm1 per chunk. Attention: with kernels
   (CUDA / interpreter) the Triton prefix-attention forward + backward (which adds into dK/dV);
   otherwise torch SDPA on the prefix with a c x e chunk mask, differentiated by autograd.
4. Embedding backward per chunk.

Gradients go through ``torch.autograd.grad`` into per-layer buffers and are written to
``.grad`` once per parameter (``p.grad += buf * grad_scale``); DDP/accelerate hooks never fire
per chunk. The result equals plain autograd up to floating-point summation order.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import torch
from gradkit.errors import ConfigError
from gradkit.kernels import use_triton

from gradkit_streambp.adapters import DecoderAdapter, LayerParts, check_trainable_state, get_adapter
from gradkit_streambp.ops.prefix_attention import prefix_attention_bwd, prefix_attention_fwd, prefix_attention_sdpa
from gradkit_streambp.ops.weighted_ce import weighted_ce_bwd, weighted_ce_fwd

__all__ = ["StreamStats", "stream_backward", "chunked_token_logprobs", "resolve_chunk", "shifted_targets"]

IGNORE = -100


@dataclass
class StreamStats:
    """What one call did: chunk counts and the sizes of the largest live buffers (bytes)."""

    layer_chunks: int = 0
    head_chunks: int = 0
    head_passes: int = 1
    checkpoint_bytes: int = 0
    logits_block_bytes: int = 0
    extra: dict[str, float] = field(default_factory=dict)


def resolve_chunk(value: Any, T: int, name: str) -> int:
    if value == "auto":
        return max(1024, math.ceil(T / 3)) if name == "layer_chunk" else 512
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigError(f"`{name}` must be a positive int or 'auto', got {value!r}")
    if value <= 0:
        raise ConfigError(f"`{name}` must be a positive int (tokens per chunk), got {value}; e.g. {name}=512")
    return value


def _chunks(T: int, c: int):
    for s in range(0, T, c):
        yield s, min(T, s + c)


def shifted_targets(labels: torch.Tensor) -> torch.Tensor:
    """``targets[:, t] = labels[:, t + 1]``, last column ignored (Hugging Face's causal-LM shift)."""
    tgt = torch.full_like(labels, IGNORE)
    tgt[:, :-1] = labels[:, 1:]
    return tgt


def _rotate_half(x: torch.Tensor) -> torch.Tensor:
    h = x.shape[-1] // 2
    return torch.cat((-x[..., h:], x[..., :h]), dim=-1)


def _rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    # x (B, H, c, D); cos/sin (B|1, c, D)
    cos = cos.unsqueeze(1)
    sin = sin.unsqueeze(1)
    return (x * cos) + (_rotate_half(x) * sin)


class _GradSink:
    """Per-parameter accumulation buffers, flushed into ``.grad`` once."""

    def __init__(self, grad_scale: float, accum_dtype: torch.dtype | None):
        self.grad_scale = grad_scale
        self.accum_dtype = accum_dtype
        self.bufs: dict[int, tuple[torch.nn.Parameter, torch.Tensor]] = {}

    def add(self, params, grads) -> None:
        for p, g in zip(params, grads):
            if g is None:
                continue
            entry = self.bufs.get(id(p))
            if entry is None:
                dt = self.accum_dtype if (self.accum_dtype is not None and p.dtype in (torch.float16, torch.bfloat16)) else p.dtype
                self.bufs[id(p)] = (p, g.detach().to(dt).clone() if g.dtype != dt else g.detach().clone())
            else:
                entry[1].add_(g.detach().to(entry[1].dtype))

    def flush(self, params=None) -> None:
        keys = list(self.bufs) if params is None else list(dict.fromkeys(id(p) for p in params if id(p) in self.bufs))
        for k in keys:
            p, buf = self.bufs.pop(k)
            if self.grad_scale != 1.0:
                buf.mul_(self.grad_scale)
            g = buf.to(p.dtype)
            if p.grad is None:
                p.grad = g
            else:
                p.grad.add_(g)


class _Runner:
    def __init__(self, adapter: DecoderAdapter, batch: dict, layer_chunk: int, head_chunk: int):
        self.a = adapter
        ids = batch.get("input_ids")
        if not isinstance(ids, torch.Tensor) or ids.dim() != 2:
            raise ConfigError("batch['input_ids'] must be a (batch, seq_len) LongTensor")
        self.ids = ids
        B, T = ids.shape
        self.B, self.T = B, T
        am = batch.get("attention_mask")
        if am is not None:
            if tuple(am.shape) != (B, T):
                raise ConfigError(f"batch['attention_mask'] must have shape {(B, T)}, got {tuple(am.shape)}")
            am = am.bool()
            if bool(am.all()):
                am = None
        self.key_mask = am
        pos = batch.get("position_ids")
        if pos is None:
            pos = torch.arange(T, device=ids.device).unsqueeze(0)
        self.pos = pos
        self.c = min(layer_chunk, T)
        self.kernels = use_triton(ids) and adapter.dtype != torch.float64
        self.ch = min(head_chunk, T)
        for lp in adapter.layers:
            if lp.sliding_window is not None and T > lp.sliding_window:
                raise ConfigError(
                    f"sequence length {T} exceeds the model's sliding window {lp.sliding_window}; "
                    "sliding-window attention is not supported by StreamBP yet"
                )

    # -- per-token pieces ----------------------------------------------------------------------
    def q_path(self, lp: LayerParts, x: torch.Tensor, cos, sin) -> torch.Tensor:
        B, c, _ = x.shape
        q = lp.q_proj(lp.norm1(x)).view(B, c, lp.num_heads, lp.head_dim)
        if lp.q_norm is not None:
            q = lp.q_norm(q)
        return _rope(q.transpose(1, 2), cos, sin)

    def kv_path(self, lp: LayerParts, x: torch.Tensor, cos, sin):
        B, c, _ = x.shape
        a = lp.norm1(x)
        k = lp.k_proj(a).view(B, c, lp.num_kv_heads, lp.head_dim)
        if lp.k_norm is not None:
            k = lp.k_norm(k)
        k = _rope(k.transpose(1, 2), cos, sin)
        v = lp.v_proj(a).view(B, c, lp.num_kv_heads, lp.head_dim).transpose(1, 2)
        return k, v

    def post_path(self, lp: LayerParts, x: torch.Tensor, o: torch.Tensor) -> torch.Tensor:
        B, c, _ = x.shape
        h1 = x + lp.o_proj(o.transpose(1, 2).reshape(B, c, lp.num_heads * lp.head_dim))
        return h1 + lp.mlp(lp.norm2(h1))

    def full_kv(self, lp: LayerParts, x: torch.Tensor):
        K = V = None
        for s, e in _chunks(self.T, self.c):
            k, v = self.kv_path(lp, x[:, s:e], self.cos[:, s:e], self.sin[:, s:e])
            if K is None:
                K = k.new_empty(self.B, lp.num_kv_heads, self.T, lp.head_dim)
                V = v.new_empty(self.B, lp.num_kv_heads, self.T, lp.head_dim)
            K[:, :, s:e] = k
            V[:, :, s:e] = v
        return K, V

    # -- forward -------------------------------------------------------------------------------
    @torch.no_grad()
    def forward(self) -> tuple[list[torch.Tensor], torch.Tensor]:
        h = self.a.embed(self.ids)
        cos, sin = self.a.rotary(h, self.pos)
        self.cos, self.sin = cos, sin
        ckpts: list[torch.Tensor] = []
        for lp in self.a.layers:
            ckpts.append(h)
            K, V = self.full_kv(lp, h)
            out = torch.empty_like(h)
            for s, e in _chunks(self.T, self.c):
                q = self.q_path(lp, h[:, s:e], cos[:, s:e], sin[:, s:e])
                if self.kernels:
                    o, _ = prefix_attention_fwd(q, K, V, self.key_mask, s, lp.scaling)
                else:
                    o = prefix_attention_sdpa(q, K, V, self.key_mask, s, lp.scaling)
                out[:, s:e] = self.post_path(lp, h[:, s:e], o)
            del K, V
            h = out
        return ckpts, h

    # -- backward through one layer ---------------------------------------------------------------
    def layer_backward(self, lp: LayerParts, x: torch.Tensor, g_out: torch.Tensor, sink: _GradSink) -> torch.Tensor:
        cos, sin = self.cos, self.sin
        with torch.no_grad():
            K, V = self.full_kv(lp, x)
        dK = torch.zeros_like(K)
        dV = torch.zeros_like(V)
        gx = torch.zeros_like(x)
        q_params, post_params, kv_params = lp.q_side_params, lp.post_params, lp.kv_params
        for s, e in _chunks(self.T, self.c):  # pass A: query side
            xi = x[:, s:e].detach().requires_grad_(True)
            if not self.kernels:  # CPU: autograd through torch SDPA on the prefix (fast fused kernels)
                Kp = K[:, :, :e].detach().requires_grad_(True)
                Vp = V[:, :, :e].detach().requires_grad_(True)
                with torch.enable_grad():
                    q = self.q_path(lp, xi, cos[:, s:e], sin[:, s:e])
                    o = prefix_attention_sdpa(q, Kp, Vp, self.key_mask, s, lp.scaling)
                    y = self.post_path(lp, xi, o)
                    got = torch.autograd.grad(y, [xi, Kp, Vp, *q_params, *post_params], g_out[:, s:e],
                                              allow_unused=True)
                del y, o, q
                gx[:, s:e] += got[0]
                dK[:, :, :e] += got[1]
                dV[:, :, :e] += got[2]
                sink.add(q_params, got[3:3 + len(q_params)])
                sink.add(post_params, got[3 + len(q_params):])
                continue
            with torch.enable_grad():
                q = self.q_path(lp, xi, cos[:, s:e], sin[:, s:e])
            qd = q.detach()
            with torch.no_grad():
                o, lse = prefix_attention_fwd(qd, K, V, self.key_mask, s, lp.scaling)
            o_leaf = o.detach().requires_grad_(True)
            with torch.enable_grad():
                y = self.post_path(lp, xi, o_leaf)
                got = torch.autograd.grad(y, [o_leaf, xi, *post_params], g_out[:, s:e], allow_unused=True)
            del y
            do, gxi = got[0], got[1]
            sink.add(post_params, got[2:])
            with torch.no_grad():
                dq = prefix_attention_bwd(qd, K, V, o, lse, do.contiguous(), self.key_mask, s, lp.scaling, dK, dV)
            with torch.enable_grad():
                got = torch.autograd.grad(q, [xi, *q_params], dq, allow_unused=True)
            del q
            sink.add(q_params, got[1:])
            gx[:, s:e] += gxi
            gx[:, s:e] += got[0]
        del K, V
        for s, e in _chunks(self.T, self.c):  # pass B: key/value side
            xi = x[:, s:e].detach().requires_grad_(True)
            with torch.enable_grad():
                k, v = self.kv_path(lp, xi, cos[:, s:e], sin[:, s:e])
                got = torch.autograd.grad((k, v), [xi, *kv_params], (dK[:, :, s:e], dV[:, :, s:e]), allow_unused=True)
            sink.add(kv_params, got[1:])
            gx[:, s:e] += got[0]
        return gx

    def embed_backward(self, g: torch.Tensor, sink: _GradSink) -> None:
        params = self.a.embed_params
        if not params:
            return
        for s, e in _chunks(self.T, self.c):
            with torch.enable_grad():
                out = self.a.embed(self.ids[:, s:e])
                got = torch.autograd.grad(out, params, g[:, s:e], allow_unused=True)
            sink.add(params, got)

    # -- head -------------------------------------------------------------------------------------
    def head_logits(self, x: torch.Tensor) -> torch.Tensor:
        return self.a.lm_head(self.a.final_norm(x))

    @torch.no_grad()
    def token_logprobs(self, h: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        out = torch.zeros(self.B, self.T, dtype=torch.float64 if h.dtype == torch.float64 else torch.float32, device=h.device)
        for s, e in _chunks(self.T, self.ch):
            logits = self.head_logits(h[:, s:e])
            V = logits.shape[-1]
            logp, _ = weighted_ce_fwd(logits.reshape(-1, V), targets[:, s:e].reshape(-1), IGNORE)
            out[:, s:e] = logp.view(self.B, e - s).to(out.dtype)
        return out


def stream_backward(
    model: torch.nn.Module,
    batch: dict,
    objective: Any,
    *,
    layer_chunk: int | str = "auto",
    head_chunk: int = 512,
    normalizer: float | None = None,
    grad_scale: float = 1.0,
    grad_accum_dtype: torch.dtype = torch.float32,
    stats: StreamStats | None = None,
) -> torch.Tensor:
    """Exact memory-efficient forward+backward of ``objective`` on ``batch``.

    Leaves ``.grad`` of every trainable parameter as ``(objective(model(**batch), batch,
    normalizer=normalizer) * grad_scale).backward()`` would (added to existing ``.grad``), and
    returns the detached, unscaled loss. ``objective`` is a ``gradkit.objectives`` objective
    (``CausalLMSFT``, ``GRPO``, ``DPO``) or a :class:`gradkit_streambp.objectives.StreamObjective`.

    Args:
        model: a Hugging Face Llama / Mistral / Qwen2 / Qwen3 ``*ForCausalLM`` (possibly wrapped
            by DDP or PEFT).
        batch: dict with ``input_ids`` (B, T), optional ``attention_mask`` (B, T) (0 = padding,
            left or right), ``position_ids``, ``labels`` (B, T, -100 = ignored) and the
            objective's extra keys.
        layer_chunk: query chunk for the decoder layers ("auto" = max(1024, ceil(T/3))).
        head_chunk: sequence chunk for LM head + loss (one B x chunk x vocab logits block).
        normalizer: a global normaliser (e.g. target tokens over all micro-batches/ranks).
        grad_scale: multiplies every gradient contribution (e.g. ``1/grad_accum``).
    """
    from gradkit_streambp.objectives import as_stream_objective

    adapter = get_adapter(model)
    check_trainable_state(adapter)
    obj = as_stream_objective(objective)
    if not isinstance(batch, dict):
        raise ConfigError(f"`batch` must be a dict with 'input_ids', got {type(batch).__name__}")
    ids = batch.get("input_ids")
    T = ids.shape[1] if isinstance(ids, torch.Tensor) and ids.dim() == 2 else 1
    lc = resolve_chunk(layer_chunk, T, "layer_chunk")
    hc = resolve_chunk(head_chunk, T, "head_chunk")
    if grad_scale != grad_scale:
        raise ConfigError("`grad_scale` must be a finite float")
    run = _Runner(adapter, batch, lc, hc)
    batch = _with_reference(objective, batch, lc, hc)
    state = obj.prepare(batch, normalizer)
    if tuple(state.targets.shape) != (run.B, run.T):
        raise ConfigError(f"labels must have the shape of input_ids {(run.B, run.T)}, got {tuple(state.targets.shape)}")
    targets = state.targets
    sink = _GradSink(float(grad_scale), grad_accum_dtype)
    stats = stats if stats is not None else StreamStats()

    ckpts, h = run.forward()
    stats.checkpoint_bytes = sum(t.numel() * t.element_size() for t in ckpts)
    stats.layer_chunks = math.ceil(run.T / run.c)
    stats.head_chunks = math.ceil(run.T / run.ch)

    # ---- head -------------------------------------------------------------------------------
    coef = None
    if obj.two_pass:
        stats.head_passes = 2
        logp_all = run.token_logprobs(h, targets)
        coef = obj.coefficients(logp_all, state)
        del logp_all
    head_params = adapter.head_params
    g = torch.empty_like(h)
    loss_total = torch.zeros((), dtype=torch.float64)
    for s, e in _chunks(run.T, run.ch):
        xi = h[:, s:e].detach().requires_grad_(True)
        with torch.enable_grad():
            logits = run.head_logits(xi)
        Vn = logits.shape[-1]
        stats.logits_block_bytes = max(stats.logits_block_bytes, logits.numel() * logits.element_size())
        flat = logits.detach().reshape(-1, Vn)
        tgt = targets[:, s:e].reshape(-1)
        with torch.no_grad():
            logp, lse = weighted_ce_fwd(flat, tgt, IGNORE)
        lp_leaf = logp.view(run.B, e - s).detach().requires_grad_(True)
        with torch.enable_grad():
            part = obj.chunk_loss(lp_leaf, s, e, state, coef)
            (glp,) = torch.autograd.grad(part, [lp_leaf], allow_unused=False) if part.requires_grad else (torch.zeros_like(lp_leaf),)
        loss_total += part.detach().double().cpu()
        with torch.no_grad():
            dl = weighted_ce_bwd(flat, tgt, lse, glp.reshape(-1), IGNORE)  # in place: logits now hold dlogits
        with torch.enable_grad():
            got = torch.autograd.grad(logits, [xi, *head_params], dl.view_as(logits), allow_unused=True)
        del logits, flat, dl
        g[:, s:e] = got[0]
        sink.add(head_params, got[1:])
    del h
    loss_value = obj.loss_value(loss_total, coef, state)

    # ---- layers, last to first ----------------------------------------------------------------
    for lp in reversed(adapter.layers):
        x = ckpts.pop()
        g = run.layer_backward(lp, x, g, sink)
        del x
        sink.flush(lp.q_side_params + lp.post_params + lp.kv_params)
    run.embed_backward(g, sink)
    sink.flush()
    return loss_value.to(adapter.dtype if adapter.dtype == torch.float64 else torch.float32).detach()


def _with_reference(objective: Any, batch: dict, lc: int, hc: int) -> dict:
    """DPO without precomputed ``ref_logps``: run the reference model chunked (no T x V logits)."""
    ref_model = getattr(objective, "ref_model", None)
    if ref_model is None or batch.get("ref_logps") is not None or type(objective).__name__ != "DPO":
        return batch
    try:
        get_adapter(ref_model)
    except ConfigError:
        return batch  # the objective's own (full-logits) reference forward
    from gradkit.objectives import labels_of

    lp = chunked_token_logprobs(ref_model, batch, head_chunk=hc, layer_chunk=lc, labels=labels_of(batch))
    return {**batch, "ref_logps": lp.sum(dim=1)}


@torch.no_grad()
def chunked_token_logprobs(
    model: torch.nn.Module,
    batch: dict,
    *,
    head_chunk: int = 512,
    layer_chunk: int | str = "auto",
    labels: torch.Tensor | None = None,
) -> torch.Tensor:
    """No-grad token log-probabilities aligned with logits positions (``gradkit.objectives``
    convention): ``out[b, t] = log p(labels[b, t + 1] | tokens <= t)``, shape (B, T); the last
    position and ignored labels (-100) are 0. ``labels`` defaults to ``gradkit.objectives.labels_of(batch)``
    (``batch['labels']``, else ``input_ids`` with padding ignored). Runs StreamBP's chunked forward: no T x T mask, no T x V logits. Use it
    for GRPO old/reference log-probs and DPO reference log-probs.
    """
    adapter = get_adapter(model)
    ids = batch.get("input_ids")
    T = ids.shape[1] if isinstance(ids, torch.Tensor) and ids.dim() == 2 else 1
    run = _Runner(adapter, batch, resolve_chunk(layer_chunk, T, "layer_chunk"), resolve_chunk(head_chunk, T, "head_chunk"))
    if labels is None:
        from gradkit.objectives import labels_of

        labels = labels_of(batch)
    if tuple(labels.shape) != (run.B, run.T):
        raise ConfigError(f"`labels` must have shape {(run.B, run.T)}, got {tuple(labels.shape)}")
    _, h = run.forward()
    return run.token_logprobs(h, shifted_targets(labels))
