import textwrap

import gradkit
import pytest
import torch
from gradkit import manager
from gradkit.errors import DuplicateNameError, PluginError, UnknownNameError
from gradkit.manager import PluginLoadWarning


def test_import_is_light_and_lazy():
    import subprocess
    import sys

    code = "import sys, gradkit; print('torch' in sys.modules, gradkit.manager._pm is None)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert out == ["False", "True"]


def test_manager_is_cached_and_has_builtins():
    pm = gradkit.get_plugin_manager()
    assert pm is gradkit.get_plugin_manager()
    names = {n for n, _ in pm.list_name_plugin()}
    assert {"gradkit.defaults", "gradkit.demos"} <= names


def test_user_plugin_register_and_unregister():
    calls = []

    class P:
        @gradkit.hookimpl
        def gradkit_attack_start(self, state):
            calls.append(state)

    p = P()
    name = gradkit.register(p, name="mine")
    assert name == "mine"
    gradkit.get_plugin_manager().hook.gradkit_attack_start(state="s")
    assert calls == ["s"]
    gradkit.unregister("mine")
    gradkit.get_plugin_manager().hook.gradkit_attack_start(state="s")
    assert calls == ["s"]
    with pytest.raises(UnknownNameError, match="mine"):
        gradkit.unregister("mine")


def test_misspelled_hook_names_plugin_and_hook():
    class Typo:
        @gradkit.hookimpl
        def gradkit_los_terms(self, step, outputs):
            return None

    with pytest.raises(PluginError, match=r"'typo'.*gradkit_los_terms"):
        gradkit.register(Typo(), name="typo")
    assert gradkit.get_plugin_manager().get_plugin("typo") is None


def test_wrong_hook_arguments_is_a_plugin_error():
    class Bad:
        @gradkit.hookimpl
        def gradkit_loss_terms(self, step, outputs, extra):
            return None

    with pytest.raises(PluginError, match="extra"):
        gradkit.register(Bad(), name="bad")


def test_duplicate_plugin_name_rejected():
    class A:
        pass

    gradkit.register(A(), name="dup")
    with pytest.raises(DuplicateNameError, match="dup"):
        gradkit.register(A(), name="dup")


def test_duplicate_transform_names_both_plugins():
    class One:
        @gradkit.hookimpl
        def gradkit_register_transforms(self, register):
            register("same", lambda **kw: None, summary="one")

    class Two:
        @gradkit.hookimpl
        def gradkit_register_transforms(self, register):
            register("same", lambda **kw: None, summary="two")

    gradkit.register(One(), name="plugin-one")
    gradkit.register(Two(), name="plugin-two")
    with pytest.raises(DuplicateNameError) as info:
        gradkit.transforms.available()
    assert "plugin-one" in str(info.value) and "plugin-two" in str(info.value)


def _fake_dist(tmp_path, name, modules, entry_points):
    """Write importable modules plus a *.dist-info with gradkit entry points on a sys.path folder."""
    for mod, src in modules.items():
        (tmp_path / f"{mod}.py").write_text(textwrap.dedent(src))
    info = tmp_path / f"{name.replace('-', '_')}-0.0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: 0.0.1\n")
    eps = "\n".join(f"{k} = {v}" for k, v in entry_points.items())
    (info / "entry_points.txt").write_text(f"[gradkit]\n{eps}\n")


GOOD = """
import gradkit

@gradkit.hookimpl
def gradkit_register_demos(register):
    register("fake-demo", lambda ctx: {"x": 1}, summary="fake")
"""


def test_entry_points_broken_plugin_warns_others_load(tmp_path, monkeypatch):
    _fake_dist(tmp_path, "fake-good", {"fake_good_mod": GOOD}, {"fakegood": "fake_good_mod"})
    _fake_dist(tmp_path, "fake-broken", {"fake_broken_mod": "raise RuntimeError('boom at import')"},
               {"fakebroken": "fake_broken_mod"})
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.warns(PluginLoadWarning, match=r"fakebroken.*fake-broken.*boom at import"):
        pm = gradkit.get_plugin_manager()
    assert pm.get_plugin("fakegood") is not None
    assert pm.get_plugin("fakebroken") is None
    assert "fake-demo" in gradkit.demos.available()
    infos = {i.name: i for i in manager.plugin_infos()}
    assert infos["fakegood"].distribution == "fake-good"
    assert infos["fakegood"].version == "0.0.1"
    assert "gradkit_register_demos" in infos["fakegood"].hooks


def test_entry_point_with_misspelled_hook_fails_at_load(tmp_path, monkeypatch):
    src = "import gradkit\n\n@gradkit.hookimpl\ndef gradkit_train_stepp(step):\n    return None\n"
    _fake_dist(tmp_path, "fake-typo", {"fake_typo_mod": src}, {"faketypo": "fake_typo_mod"})
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(PluginError, match=r"faketypo.*gradkit_train_stepp"):
        gradkit.get_plugin_manager()


def test_allowlist_and_denylist(tmp_path, monkeypatch):
    _fake_dist(tmp_path, "fake-good", {"fake_good_mod": GOOD}, {"fakegood": "fake_good_mod"})
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setenv("GRADKIT_DISABLE_PLUGINS", "fakegood")
    assert gradkit.get_plugin_manager().get_plugin("fakegood") is None
    manager.reset_plugin_manager()
    monkeypatch.delenv("GRADKIT_DISABLE_PLUGINS")
    monkeypatch.setenv("GRADKIT_PLUGINS", "something-else")
    pm = gradkit.get_plugin_manager()
    assert pm.get_plugin("fakegood") is None
    assert pm.get_plugin("gradkit.defaults") is not None  # built-ins always load
    manager.reset_plugin_manager()
    monkeypatch.setenv("GRADKIT_PLUGINS", "fakegood")
    assert gradkit.get_plugin_manager().get_plugin("fakegood") is not None


def test_trace_hooks_writes_to_stderr(monkeypatch, capsys):
    monkeypatch.setenv("GRADKIT_TRACE_HOOKS", "1")
    pm = gradkit.get_plugin_manager()
    pm.hook.gradkit_attack_start(state=None)
    assert "gradkit_attack_start" in capsys.readouterr().err


def test_wrapper_hook_can_wrap_default_phase():
    seen = []

    class Wrap:
        @gradkit.hookimpl(wrapper=True)
        def gradkit_input_grad(self, state):
            g = yield
            seen.append(g.shape)
            return g * 0 + 1.0

    gradkit.register(Wrap(), name="wrap")
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(4, 3))
    x = torch.rand(2, 1, 2, 2)
    res = gradkit.attack(model, x, torch.tensor([0, 1]), method="ifgsm", eps=0.1, alpha=0.05, steps=1)
    assert seen == [x.shape]
    torch.testing.assert_close(res.x_adv, (x + 0.05).clamp(0, 1))
