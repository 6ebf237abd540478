"""What importing function_app costs beyond importing the packages it depends on.

Cold starts pay for import, and Flex Consumption gives the app 30 s to initialise. The bound:
importing function_app costs at most 1.3x importing its third-party dependencies
alone. Both are measured with `python -X importtime` in fresh interpreters, median of N runs,
counting only the imports the statement itself triggers (not interpreter start-up).
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
OWN_PACKAGES = {"function_app", "functions", "shared"}
BOUND = 1.3

_LIST_DEPENDENCIES = """
import sys
before = set(sys.modules)
import function_app
stdlib = set(sys.stdlib_module_names)
own = %r
def package(name):
    parts = name.split('.')
    return '.'.join(parts[:2]) if parts[0] == 'azure' and len(parts) > 1 else parts[0]
new = {package(m) for m in set(sys.modules) - before}
def third_party(name):
    top = name.split('.')[0]
    return top not in stdlib and top not in own and not top.startswith('_') and all(
        part.isidentifier() for part in name.split('.'))
tops = sorted(n for n in new if third_party(n))
print(__import__('json').dumps(tops))
"""


def third_party_dependencies() -> list[str]:
    out = subprocess.run(
        [sys.executable, "-c", _LIST_DEPENDENCIES % (OWN_PACKAGES,)],
        cwd=REPO_ROOT, capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    return list(json.loads(out.strip().splitlines()[-1]))


def import_microseconds(statement: str) -> int:
    """Sum of the cumulative times of the top-level imports that `statement` triggers."""
    baseline = _top_level_imports("pass")
    timings = _top_level_imports(statement)
    return sum(us for name, us in timings.items() if name not in baseline)


def _top_level_imports(statement: str) -> dict[str, int]:
    result = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", statement],
        cwd=REPO_ROOT, capture_output=True, text=True, check=True,
    )  # fmt: skip
    timings: dict[str, int] = {}
    for line in result.stderr.splitlines():
        if not line.startswith("import time:") or "cumulative" in line:
            continue
        _, cumulative, name = line.split("|", 2)
        if not name.startswith(" ") or name.startswith("  "):
            continue  # nested import: already inside its parent's cumulative time
        timings[name.strip()] = timings.get(name.strip(), 0) + int(cumulative)
    return timings


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=9)
    args = parser.parse_args(argv)
    dependencies = third_party_dependencies()
    deps_statement = "; ".join(f"import {name}" for name in dependencies)
    app_runs = [import_microseconds("import function_app") for _ in range(args.runs)]
    deps_runs = [import_microseconds(deps_statement) for _ in range(args.runs)]
    app_ms, deps_ms = statistics.median(app_runs) / 1000, statistics.median(deps_runs) / 1000
    ratio = app_ms / deps_ms
    print(f"import_cost: dependencies imported at import time: {', '.join(dependencies)}")
    print(
        f"import_cost: function_app {app_ms:.1f} ms, dependencies alone {deps_ms:.1f} ms "
        f"(median of {args.runs}); ratio {ratio:.2f} (bound {BOUND})"
    )
    if ratio > BOUND:
        print("import_cost: FAIL: importing function_app costs too much beyond its dependencies")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
