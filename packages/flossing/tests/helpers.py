"""Shared builders for the flossing tests (float64 by default)."""

from __future__ import annotations

import torch
from torch import nn

F64 = torch.float64


def seeded(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def make_rnn(kind: str, input_size: int = 3, hidden: int = 5, layers: int = 1, batch_first: bool = False,
             nonlinearity: str = "tanh", gain: float = 1.0, seed: int = 0, dtype=F64) -> nn.Module:
    torch.manual_seed(seed)
    if kind == "rnn":
        m = nn.RNN(input_size, hidden, num_layers=layers, batch_first=batch_first, nonlinearity=nonlinearity)
    elif kind == "gru":
        m = nn.GRU(input_size, hidden, num_layers=layers, batch_first=batch_first)
    elif kind == "lstm":
        m = nn.LSTM(input_size, hidden, num_layers=layers, batch_first=batch_first)
    elif kind == "rnncell":
        m = nn.RNNCell(input_size, hidden, nonlinearity=nonlinearity)
    elif kind == "grucell":
        m = nn.GRUCell(input_size, hidden)
    elif kind == "lstmcell":
        m = nn.LSTMCell(input_size, hidden)
    else:
        raise ValueError(kind)
    m = m.to(dtype)
    with torch.no_grad():
        for name, p in m.named_parameters():
            if "weight" in name:
                p.mul_(gain * 2.0)  # leave the near-linear regime so slopes matter
    return m


def torch_reference_step(module: nn.Module, h: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """One step of the torch module itself on the flattened adapter state (the oracle for adapters)."""
    if isinstance(module, nn.RNNCellBase):
        if isinstance(module, nn.LSTMCell):
            N = module.hidden_size
            h2, c2 = module(x, (h[:, :N], h[:, N:]))
            return torch.cat([h2, c2], 1)
        return module(x, h)
    L, N = module.num_layers, module.hidden_size
    xin = x.unsqueeze(1) if module.batch_first else x.unsqueeze(0)
    if isinstance(module, nn.LSTM):
        hc = h.view(h.shape[0], L, 2, N)
        hh = hc[:, :, 0].transpose(0, 1).contiguous()
        cc = hc[:, :, 1].transpose(0, 1).contiguous()
        _, (h2, c2) = module(xin, (hh, cc))
        return torch.stack([h2, c2], 2).transpose(0, 1).reshape(h.shape[0], -1)
    hh = h.view(h.shape[0], L, N).transpose(0, 1).contiguous()
    _, h2 = module(xin, hh)
    return h2.transpose(0, 1).reshape(h.shape[0], -1)
