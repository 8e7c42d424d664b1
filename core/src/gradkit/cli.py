"""The ``gradkit`` command: ``gradkit plugins``, ``gradkit demo [NAME ...]``, ``gradkit transforms``, ``--version``."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from . import __version__


def _cmd_plugins(args: argparse.Namespace) -> int:
    from .manager import plugin_infos

    infos = plugin_infos()
    rows = [(i.name, i.distribution or ("gradkit (built-in)" if i.builtin else "(registered at run time)"),
             i.version or (__version__ if i.builtin else "-"), ", ".join(h.removeprefix("gradkit_") for h in i.hooks))
            for i in infos]
    rows.sort(key=lambda r: (r[1].startswith("gradkit ("), r[0]))
    header = ("plugin", "distribution", "version", "hooks (gradkit_*)")
    widths = [max(len(str(r[c])) for r in [header, *rows]) for c in range(3)]
    print("  ".join(h.ljust(w) for h, w in zip(header[:3], widths)) + "  " + header[3])
    for r in rows:
        print("  ".join(str(v).ljust(w) for v, w in zip(r[:3], widths)) + "  " + r[3])
    return 0


def _cmd_transforms(args: argparse.Namespace) -> int:
    from .manager import transform_entries

    for name, e in sorted(transform_entries().items()):
        print(f"{name:<16} {e.plugin:<14} {e.summary}")
    return 0


def _cmd_demo(args: argparse.Namespace) -> int:
    from .demos import available, run_demos
    from .errors import UnknownNameError

    if args.list:
        for n, s in available().items():
            print(f"{n:<14} {s}")
        return 0
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    try:
        results = run_demos(args.names, Path(args.out), seed=args.seed, progress=not args.no_progress,
                            keep_going=True)
    except UnknownNameError as exc:
        print(f"gradkit demo: {exc}", file=sys.stderr)
        return 2
    failed = [n for n, r in results.items() if "error" in r]
    if failed:
        print(f"gradkit demo: failed: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="gradkit", description="gradkit: plugins that change how gradients are computed")
    p.add_argument("--version", action="version", version=f"gradkit {__version__}")
    sub = p.add_subparsers(dest="command")
    sp = sub.add_parser("plugins", help="list installed plugins, versions and the hooks they implement")
    sp.set_defaults(fn=_cmd_plugins)
    st = sub.add_parser("transforms", help="list registered gradient transforms")
    st.set_defaults(fn=_cmd_transforms)
    sd = sub.add_parser("demo", help="run registered demos (all by default) on embedded defaults")
    sd.add_argument("names", nargs="*", help="demo names (default: all installed)")
    sd.add_argument("--out", default="gradkit-demo", help="report folder (default: ./gradkit-demo)")
    sd.add_argument("--seed", type=int, default=0)
    sd.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    sd.add_argument("--list", action="store_true", help="list demos and exit")
    sd.add_argument("--no-progress", action="store_true", help="no progress bars")
    sd.set_defaults(fn=_cmd_demo)
    return p


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "fn", None):
        parser.print_help()
        return 0
    return int(args.fn(args))


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
