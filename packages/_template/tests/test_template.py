import pytest
import torch
from gradkit.errors import ConfigError
from gradkit.testing import PluginContract
from gradkit_template import GradScale
from gradkit_template.ops import _scale
from gradkit_template.reference import scale_reference


class TestTemplateContract(PluginContract):
    plugin_name = "template"
    distribution = "gradkit-template"
    transform_names = ("template-scale",)
    demo_names = ("template",)

    def make_model(self, transform_name):
        torch.manual_seed(0)
        return torch.nn.Sequential(torch.nn.Linear(5, 7), torch.nn.Tanh(), torch.nn.Linear(7, 3)).double()

    def make_inputs(self, transform_name):
        return (torch.randn(4, 5, dtype=torch.float64),)

    def misuse_cases(self):
        return [lambda: GradScale(factor=0.0), lambda: GradScale(factor=-1.0)]


def test_gradient_is_scaled_exactly():
    torch.manual_seed(0)
    model = torch.nn.Linear(3, 2).double()
    x = torch.randn(5, 3, dtype=torch.float64)
    model(x).pow(2).sum().backward()
    plain = model.weight.grad.clone()
    model.zero_grad()
    with GradScale(model, factor=0.25):
        y = model(x)
        y.pow(2).sum().backward()
    torch.testing.assert_close(model.weight.grad, 0.25 * plain, rtol=1e-12, atol=0)


def test_bad_factor_names_parameter():
    with pytest.raises(ConfigError, match="factor"):
        GradScale(factor=0)


@pytest.mark.kernel
@pytest.mark.parametrize("n", [1, 63, 431, 5000])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
def test_kernel_matches_reference(n, dtype):
    from gradkit_template.kernels.scale import scale_fwd

    x = torch.randn(n).to(dtype)
    torch.testing.assert_close(scale_fwd(x, 0.3), scale_reference(x, 0.3))
    torch.testing.assert_close(_scale(x, 0.3), scale_reference(x, 0.3))
