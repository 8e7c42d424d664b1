import gradkit_snn_sd as sd
import torch
from gradkit.testing import PluginContract
from torch import nn


class NoBNNet(sd.SpikingClassifier):
    """No BatchNorm, so exercising a training step leaves the state dict as it was."""

    def __init__(self):
        super().__init__()
        self.T, self.input_shape = 3, (1, 8, 8)
        self.stage1 = nn.Sequential(sd.TimeFold(nn.Conv2d(1, 8, 3, 1, 1)), sd.RateLIF(tau=2.0))
        self.stage2 = nn.Sequential(sd.TimeFold(nn.Conv2d(8, 16, 3, 2, 1)), sd.RateLIF(v_reset=0.0))
        self.fc = nn.Linear(16, 10)

    def features(self, xs):
        return self.stage2(self.stage1(xs))


class TestSnnSdContract(PluginContract):
    plugin_name = "snn-sd"
    distribution = "gradkit-snn-sd"
    transform_names = ("rate-bp-m", "rate-bp-s", "snn-sd")
    demo_names = ("snn-sd",)

    def make_model(self, transform_name):
        torch.manual_seed(0)
        m = NoBNNet().double()
        with torch.no_grad():
            for p in m.parameters():
                p.mul_(3.0)  # make the neurons fire
        return m

    def make_inputs(self, transform_name):
        torch.manual_seed(1)
        return (torch.rand(4, 1, 8, 8, dtype=torch.float64),)

    def transform_config(self, transform_name):
        return {"stages": ["stage1"]} if transform_name == "snn-sd" else {}

    def misuse_cases(self):
        return [
            lambda: sd.RateBPConfig(T=0),
            lambda: sd.RateBPConfig(T=-3),
            lambda: sd.SpikingConvNet(T=0),
            lambda: sd.RateBackpropM().attach(nn.Sequential(nn.Linear(2, 2))),
            lambda: sd.SelfDistillation(stages=("nope",)).attach(NoBNNet()),
            lambda: sd.SDConfig(stages=("a",), beta=-1.0),
            lambda: sd.RateLIF(tau=0.5),
        ]
