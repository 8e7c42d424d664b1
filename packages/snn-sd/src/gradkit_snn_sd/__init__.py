"""gradkit-snn-sd: rate-based backpropagation and enhanced self-distillation for spiking networks.

- :class:`RateBackpropM` (``"rate-bp-m"``) and :class:`RateBackpropS` (``"rate-bp-s"``): rate-based
  backpropagation (Yu et al., NeurIPS 2024, arXiv 2410.11488).
- :class:`SelfDistillation` (``"snn-sd"``): rate-pass ANN branches with the reliable-exit teacher
  (Zhao, Yu et al., NeurIPS 2025, arXiv 2510.06254).
- :class:`RateLIF` and spiking backbones in :mod:`gradkit_snn_sd.models`.

spikingjelly (optional) is never imported here; its ``LIFNode``/``IFNode`` are recognised when the
user's model already uses them.
"""

from .config import RateBPConfig, SDConfig
from .functional import masked_kd, rate_node, reliable_teacher
from .models import (
    SpikingClassifier,
    SpikingConvNet,
    SpikingResNet,
    SpikingVGG,
    spiking_resnet18,
    spiking_resnet19,
    spiking_vgg11,
    tiny_resnet,
)
from .modules import DeepConv, RateLIF, SepConvBranch, TimeFold
from .transform import RateBackprop, RateBackpropM, RateBackpropS, SelfDistillation, find_neurons

__version__ = "0.1.0"

__all__ = [
    "RateBPConfig",
    "SDConfig",
    "RateBackprop",
    "RateBackpropM",
    "RateBackpropS",
    "SelfDistillation",
    "RateLIF",
    "TimeFold",
    "DeepConv",
    "SepConvBranch",
    "rate_node",
    "reliable_teacher",
    "masked_kd",
    "find_neurons",
    "SpikingClassifier",
    "SpikingConvNet",
    "SpikingResNet",
    "SpikingVGG",
    "spiking_resnet18",
    "spiking_resnet19",
    "spiking_vgg11",
    "tiny_resnet",
    "require_spikingjelly",
]


def require_spikingjelly():  # type: ignore[no-untyped-def]
    """Import ``spikingjelly.activation_based`` or raise an ImportError explaining the ``--no-deps`` install."""
    try:
        import spikingjelly.activation_based as sj  # noqa: F401
        from spikingjelly.activation_based import functional, layer, neuron, surrogate  # noqa: F401
    except ImportError as exc:
        raise ImportError(
            "this needs spikingjelly 2.0, installed WITHOUT its declared dependencies (they pull torchvision/"
            "torchaudio, which break beside a CPU torch): `pip install --no-deps spikingjelly==2.0.0 loguru tqdm`"
        ) from exc
    return sj
