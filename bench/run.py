"""Run every part's benchmark (`make bench`), then print all figures together.

Each `bench/bench_<part>.py` has a `main(argv)` that prints its own table and writes
`bench/output/<part>.json`. `make bench ARGS=--small` passes `--small` to each for a quick run.
"""

from __future__ import annotations

import importlib
import json
import sys
import time
import traceback
from pathlib import Path

from rich.console import Console
from rich.table import Table

HERE = Path(__file__).parent
ORDER = ["clinical", "imaging", "portal", "research"]


def discover() -> list[str]:
    found = sorted(p.stem.removeprefix("bench_") for p in HERE.glob("bench_*.py"))
    return [n for n in ORDER if n in found] + [n for n in found if n not in ORDER]


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    only = [a.removeprefix("--only=") for a in argv if a.startswith("--only=")]
    passthrough = [a for a in argv if not a.startswith("--only=")]
    console = Console()
    failures = []
    for name in discover():
        if only and name not in only:
            continue
        console.rule(f"bench: {name}")
        started = time.perf_counter()
        try:
            module = importlib.import_module(f"bench.bench_{name}")
            module.main(passthrough)
        except SystemExit as exc:
            if exc.code not in (0, None):
                failures.append(name)
        except Exception:
            traceback.print_exc()
            failures.append(name)
        console.print(f"[dim]{name}: {time.perf_counter() - started:.1f} s[/]")

    table = Table("part", "figure", "value", title="nccid benchmark figures")
    for path in sorted((HERE / "output").glob("*.json")):
        data = json.loads(path.read_text())
        for key, value in _flatten(data):
            table.add_row(path.stem, key, str(value))
    console.print(table)
    if failures:
        console.print(f"[red]benchmarks that failed: {', '.join(failures)}[/]")
    return 1 if failures else 0


def _flatten(data, prefix=""):
    if isinstance(data, dict):
        for key, value in data.items():
            yield from _flatten(value, f"{prefix}{key}." if isinstance(value, dict) else f"{prefix}{key}")
    else:
        yield prefix, data


if __name__ == "__main__":
    sys.exit(main())
