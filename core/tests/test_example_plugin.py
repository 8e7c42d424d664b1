"""Install the out-of-tree example plugin (docs/examples/gradkit-gradnorm) into a folder and run it."""

import subprocess
import sys
from pathlib import Path

import gradkit
import pytest
import torch
from gradkit.objectives import ClassificationCE

EXAMPLE = Path(__file__).resolve().parents[2] / "docs" / "examples" / "gradkit-gradnorm"


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    target = tmp_path_factory.mktemp("site")
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation",
                    "--target", str(target), str(EXAMPLE)], check=True, capture_output=True)
    return target


def test_example_plugin_installs_registers_and_trains(installed, monkeypatch):
    monkeypatch.syspath_prepend(str(installed))
    gradkit.reset_plugin_manager()
    assert gradkit.get_plugin_manager().get_plugin("gradnorm") is not None
    assert "gradnorm" in gradkit.transforms.available()
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.Tanh(), torch.nn.Linear(8, 3)).double()
    data = [(torch.randn(6, 4, dtype=torch.float64), torch.randint(0, 3, (6,)))]
    s = gradkit.train(model, data, objective=ClassificationCE(), steps=2, lr=0.0, progress=False,
                      transforms=[("gradnorm", {"weight": 0.1})])
    h = s["history"][0]
    assert h["term/gradnorm"] > 0 and "gradnorm/param_grad_norm" in h
    # without the transform the hooks stay silent
    s2 = gradkit.train(model, data, objective=ClassificationCE(), steps=1, lr=0.0, progress=False)
    assert "term/gradnorm" not in s2["history"][0]
    # the penalty really enters the gradient: compare with explicit double backprop
    x, y = data[0]
    loss = torch.nn.functional.cross_entropy(model(x), y)
    grads = torch.autograd.grad(loss, list(model.parameters()), create_graph=True)
    pen = sum((g * g).sum() for g in grads)
    assert h["term/gradnorm"] == pytest.approx(pen.item(), rel=1e-10)
