"""Merge several ``bench_memory.py`` result files: later files replace earlier rows of the same (method, T).

    python benchmarks/merge_runs.py OUT.jsonl RUN1.jsonl RUN2.jsonl ...   (also writes OUT's memory.png)
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from bench_memory import plot  # noqa: E402


def main() -> None:
    out, *runs = sys.argv[1:]
    rows: dict[tuple[str, int], dict] = {}
    for i, path in enumerate(runs):
        for line in Path(path).read_text().splitlines():
            if line.strip():
                r = json.loads(line)
                r["run"] = i
                rows[(r["method"], r["T"])] = r
    ordered = sorted(rows.values(), key=lambda r: (r["T"], ["plain", "checkpointing", "streambp"].index(r["method"])))
    Path(out).write_text("".join(json.dumps(r) + "\n" for r in ordered))
    plot([r for r in ordered if "step_s" in r], Path(out).with_name("memory.png"))


if __name__ == "__main__":
    main()
