"""Run the Hypothesis test modules under many random seeds and tabulate the failures.

Run: ``python tests/property_seeds.py`` (30 seeds), or e.g.
``python tests/property_seeds.py --seeds 100 --first-seed 1000 tests/optimizers/test_properties.py``.
Each seed is one ``python -m pytest -m hypothesis --hypothesis-seed=SEED`` (the tests that
draw examples) in a fresh process under the
``explore`` profile (random examples; ``--factor`` times the examples each test asks for),
so every seed draws its own examples and a failing one is replayed by the same command.
The default, derandomized profile always draws one fixed set; this checks that the
properties hold beyond it. Not collected by pytest (its name does not start with
``test_``) and not run in CI: it takes about as long as the modules take, times the seeds.
The exit status is 1 when any seed failed.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import time
from pathlib import Path

TESTS = Path(__file__).resolve().parent
HYPOTHESIS_MODULES = [
    "optimizers/test_properties.py",
    "test_conversions.py",
    "optimizers/test_rule.py",
    "selection/test_ridge.py",
    "selection/test_search.py",
    "selection/test_kfold.py",
    "selection/test_trainer.py",
]
_COUNT = re.compile(r"(\d+) (passed|failed|error|errors)\b")


def run_seed(seed: int, modules: list[str], profile: str, factor: int, select: str) -> dict:
    """One pytest run under ``seed``: its counts, failing test ids and wall time."""
    env = {
        **os.environ,
        "HYPOTHESIS_PROFILE": profile,
        "HYPOTHESIS_EXPLORE_FACTOR": str(factor),
        "PYTHONPATH": os.pathsep.join([str(TESTS.parent), os.environ.get("PYTHONPATH", "")]),
    }
    # -m hypothesis: only the tests that draw examples (the plugin marks every @given test).
    command = [sys.executable, "-m", "pytest", "-q", "-rfE", "-p", "no:cacheprovider",
               "-m", "hypothesis", f"--hypothesis-seed={seed}", *modules]
    if select:
        command += ["-k", select]
    start = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, env=env, cwd=TESTS.parent)
    seconds = time.perf_counter() - start
    summary = done.stdout.strip().splitlines()[-1] if done.stdout.strip() else done.stderr
    counts = {kind.rstrip("s"): int(number) for number, kind in _COUNT.findall(summary)}
    failing = re.findall(r"^(?:FAILED|ERROR) (\S+)", done.stdout, flags=re.MULTILINE)
    if done.returncode not in (0, 1) and not failing:  # collection or usage error
        failing = [f"pytest exited with {done.returncode}: {summary.strip()[:200]}"]
    return {"seed": seed, "passed": counts.get("passed", 0),
            "failed": counts.get("failed", 0) + counts.get("error", 0) or len(failing),
            "seconds": seconds, "failing": failing}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("modules", nargs="*", help="test files (default: every module with "
                        "Hypothesis tests)")
    parser.add_argument("--seeds", type=int, default=30, help="how many seeds (default 30)")
    parser.add_argument("--first-seed", type=int, default=0, help="seeds run from here up")
    parser.add_argument("--factor", type=int, default=1,
                        help="examples per test, times what the test asks for (default 1)")
    parser.add_argument("-k", dest="select", default="",
                        help="only the tests whose names match this pytest -k expression")
    parser.add_argument("--profile", default="explore",
                        help="Hypothesis profile; must draw random examples (default explore)")
    args = parser.parse_args(argv)
    modules = args.modules or [str(TESTS / name) for name in HYPOTHESIS_MODULES]

    print(f"{'seed':>8} {'passed':>7} {'failed':>7} {'seconds':>8}  failing tests")
    results = []
    for seed in range(args.first_seed, args.first_seed + args.seeds):
        result = run_seed(seed, modules, args.profile, args.factor, args.select)
        results.append(result)
        print(f"{seed:>8} {result['passed']:>7} {result['failed']:>7} "
              f"{result['seconds']:>8.1f}  {' '.join(result['failing'])}", flush=True)
    failed_seeds = [r["seed"] for r in results if r["failed"]]
    total = sum(r["failed"] for r in results)
    print(f"{len(results)} seeds, {len(failed_seeds)} with failures ({total} failed tests)"
          + (f": seeds {failed_seeds}" if failed_seeds else ""))
    return 1 if failed_seeds else 0


if __name__ == "__main__":
    sys.exit(main())
