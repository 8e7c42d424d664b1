import os
from importlib.metadata import entry_points

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import pytest  # noqa: E402
import torch  # noqa: E402

torch.set_num_threads(1)


# The core's tests run against the core alone, even where plugins are installed beside it.
_INSTALLED = sorted({ep.name for ep in entry_points(group="gradkit")})
os.environ["GRADKIT_DISABLE_PLUGINS"] = ",".join(_INSTALLED)


@pytest.fixture(autouse=True)
def _fresh_plugin_manager():
    from gradkit.manager import reset_plugin_manager

    reset_plugin_manager()
    yield
    reset_plugin_manager()


def tiny_llama(vocab=61, hidden=32, layers=2, heads=4, kv_heads=2, seed=0, dtype=torch.float64):
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    cfg = LlamaConfig(vocab_size=vocab, hidden_size=hidden, intermediate_size=2 * hidden, num_hidden_layers=layers,
                      num_attention_heads=heads, num_key_value_heads=kv_heads, max_position_embeddings=128,
                      attn_implementation="eager")
    return LlamaForCausalLM(cfg).to(dtype)
