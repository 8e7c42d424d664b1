"""Cross-package checks: all plugins installed together, independent, and laid out alike."""

import ast
import re
import subprocess
import sys
from importlib import metadata
from pathlib import Path

import pytest
import tomllib

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = sorted(p.parent.name for p in ROOT.glob("packages/*/pyproject.toml") if not p.parent.name.startswith("_"))
EXPECTED = {"streambp", "linbp", "flossing", "diffbreak", "snn-sd", "fastsample"}
HEAVY = ("triton", "transformers", "diffusers", "spikingjelly", "accelerate", "matplotlib")


def _mod(name):
    return "gradkit_" + name.replace("-", "_")


def test_all_six_packages_exist():
    assert EXPECTED <= set(PACKAGES)


@pytest.mark.parametrize("name", PACKAGES)
def test_layout_and_metadata(name):
    d = ROOT / "packages" / name
    meta = tomllib.loads((d / "pyproject.toml").read_text())
    proj = meta["project"]
    assert proj["name"] == f"gradkit-{name}"
    assert meta["build-system"]["build-backend"] == "setuptools.build_meta"
    assert proj["entry-points"]["gradkit"] == {name: f"{_mod(name)}.plugin"}
    deps = " ".join(proj["dependencies"])
    assert re.search(r"\bgradkit(\[[a-z,]+\])?\s*[<>=~]", deps), "depends on a gradkit version range"
    assert "torch==" not in deps, "packages declare a torch range, never a pin"
    assert "triton" in " ".join(proj.get("optional-dependencies", {}).get("triton", []))
    src = d / "src" / _mod(name)
    for part in ("__init__.py", "plugin.py", "config.py", "reference", "kernels", "ops"):
        assert (src / part).exists(), f"{name}: missing src/{_mod(name)}/{part}"
    assert list((src / "kernels").glob("*.py")), f"{name}: no Triton kernels"
    assert (d / "tests").is_dir() and (d / "benchmarks").is_dir()
    readme = (d / "README.md").read_text()
    assert re.search(r"^\|.*\d.*\|", readme, flags=re.M), f"{name}: README has no table of measured numbers"
    assert "arxiv.org" in readme.lower(), f"{name}: README links the paper"


@pytest.mark.parametrize("name", PACKAGES)
def test_plugin_never_imports_another_plugin(name):
    others = {_mod(o) for o in PACKAGES if o != name}
    for path in (ROOT / "packages" / name / "src").rglob("*.py"):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            mods = []
            if isinstance(node, ast.Import):
                mods = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                mods = [node.module]
            for m in mods:
                assert m.split(".")[0] not in others, f"{path.relative_to(ROOT)} imports {m}"


@pytest.mark.parametrize("name", PACKAGES)
def test_plugin_module_imports_nothing_heavy(name):
    code = (f"import sys, {_mod(name)}.plugin; "
            f"print(','.join(m for m in {HEAVY!r} if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == "", f"importing {_mod(name)}.plugin pulled in: {out}"


def test_all_plugins_load_together_without_name_clashes():
    import gradkit

    gradkit.reset_plugin_manager()
    pm = gradkit.get_plugin_manager()
    loaded = {n for n, _ in pm.list_name_plugin()}
    assert set(PACKAGES) <= loaded
    transforms = gradkit.transforms.available()  # raises on duplicate names
    demos = gradkit.demos.available()
    assert set(PACKAGES) <= set(demos), f"every plugin registers a demo named after it: {sorted(demos)}"
    assert len(transforms) >= len(PACKAGES)
    dists = {ep.name: ep.dist.metadata["Name"] for ep in metadata.entry_points(group="gradkit")}
    for name in PACKAGES:
        assert dists[name] == f"gradkit-{name}"


def test_cli_lists_every_plugin():
    out = subprocess.run([sys.executable, "-m", "gradkit", "plugins"], capture_output=True, text=True, check=True).stdout
    for name in PACKAGES:
        assert re.search(rf"^{re.escape(name)}\s+gradkit-{re.escape(name)}\s+\d", out, flags=re.M), out
