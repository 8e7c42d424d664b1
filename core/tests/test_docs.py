"""Docs stay true: every hook documented with its exact signature; every GRADKIT_* variable listed."""

import inspect
import re
from pathlib import Path

from gradkit import hookspecs

ROOT = Path(__file__).resolve().parents[2]


def _signature(fn):
    s = inspect.signature(fn)
    params = ", ".join(f"{p.name}: {p.annotation}" for p in s.parameters.values())
    return f"{fn.__name__}({params}) -> {s.return_annotation}"


def test_every_hook_documented_with_exact_signature():
    text = (ROOT / "docs" / "hooks.md").read_text()
    documented = {name: sig for sig, name in re.findall(r"^### `((gradkit_\w+)\(.*\) -> .*)`$", text, flags=re.M)}
    specs = {n: getattr(hookspecs, n) for n in dir(hookspecs) if n.startswith("gradkit_")}
    assert set(specs) == set(documented), f"undocumented: {set(specs) - set(documented)}; stale: {set(documented) - set(specs)}"
    for name, fn in specs.items():
        assert documented[name] == _signature(fn), f"docs/hooks.md signature of {name} differs"
        firstresult = fn.gradkit_spec.get("firstresult", False)
        section = text.split(f"### `{documented[name]}`", 1)[1].split("### ", 1)[0]
        assert ("*firstresult*" in section) == firstresult, f"{name}: firstresult flag not documented correctly"


def test_every_environment_variable_documented():
    env_doc = (ROOT / "docs" / "environment.md").read_text()
    used = set()
    for folder in [ROOT / "core" / "src", *(ROOT / "packages").glob("*/src")]:
        for path in folder.rglob("*.py"):
            used |= set(re.findall(r"GRADKIT_[A-Z_]+", path.read_text()))
    missing = sorted(v for v in used if f"`{v}`" not in env_doc)
    assert not missing, f"document these in docs/environment.md: {missing}"
