"""Small models shared by the core tests (importable by spawned processes)."""

import torch


class TinyLM(torch.nn.Module):
    """A causal LM in miniature: embedding, a causal running mean, a linear head. ``forward -> logits``."""

    def __init__(self, vocab: int = 23, dim: int = 8) -> None:
        super().__init__()
        self.emb = torch.nn.Embedding(vocab, dim)
        self.mix = torch.nn.Linear(dim, dim)
        self.head = torch.nn.Linear(dim, vocab)

    def forward(self, input_ids, attention_mask=None):
        h = self.emb(input_ids)
        if attention_mask is not None:
            h = h * attention_mask.unsqueeze(-1).to(h.dtype)
        csum = h.cumsum(dim=1) / torch.arange(1, h.shape[1] + 1, dtype=h.dtype).view(1, -1, 1)
        return self.head(torch.tanh(self.mix(csum)))


def lm_batches(n: int, seed: int = 0, vocab: int = 23):
    """``n`` micro-batches of different shapes with padding and prompt masking (labels = -100)."""
    g = torch.Generator().manual_seed(seed)
    out = []
    for i in range(n):
        b, t = 2 + (i % 2), 5 + 2 * i
        ids = torch.randint(0, vocab, (b, t), generator=g)
        mask = torch.ones(b, t, dtype=torch.long)
        mask[0, t - 1 - i % 3:] = 0  # right padding of different lengths
        labels = ids.masked_fill(mask == 0, -100)
        labels[:, : 1 + i] = -100  # prompt
        out.append({"input_ids": ids, "attention_mask": mask, "labels": labels})
    return out
