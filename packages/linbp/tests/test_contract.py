from __future__ import annotations

import torch
from gradkit.testing import PluginContract
from gradkit_linbp import LinBP
from gradkit_linbp.ila import ILA
from nets import TinyResNet, TVBottleneck, randomize_bn


class TestLinBPContract(PluginContract):
    plugin_name = "linbp"
    distribution = "gradkit-linbp"
    transform_names = ("linbp", "ila")
    demo_names = ("linbp",)

    def make_model(self, transform_name):
        torch.manual_seed(0)
        return randomize_bn(TinyResNet(TVBottleneck))

    def make_inputs(self, transform_name):
        return (torch.rand(2, 3, 8, 8),)

    def transform_config(self, transform_name):
        return {"start": 2, "lam": 0.8} if transform_name == "linbp" else {"layer": "layers.1"}

    def misuse_cases(self):
        return [
            lambda: LinBP(start=0).attach(torch.nn.Linear(2, 2)),  # no ReLU
            lambda: LinBP(start=50).attach(TinyResNet()),  # position that does not exist
            lambda: LinBP(lam=-1.0),
            lambda: ILA(layer=""),
            lambda: ILA(layer="nope").attach(TinyResNet()),
        ]
