"""What each pytest fixture of analytics-mock costs a test, against a no-fixture baseline.

    python benchmarks/fixtures.py [--runs 3] [--tests 200]

Run it with the Python that has analytics-mock installed (the project's venv). It writes a
throw-away test project into a temporary directory and runs pytest there, in a fresh process
each time, `--runs` times over for each of three test files of `--tests` tests:

- `baseline`: each test does nothing (what pytest itself costs a test);
- `analytics_mock`: each test takes the in-process fixture and does one authenticated GET of
  the settings list through its `client`;
- `analytics_mock_server`: the same with the real-server fixture, over TCP on 127.0.0.1.

A small conftest plugin times each test (setup, call and teardown: `pytest_runtest_protocol`)
and the whole test loop. Per run and fixture it derives, against the baseline run of the same
round:

- per test: the median test's time minus the baseline's median test: what each test of a
  long suite pays (the target's measure);
- one-off: the first test's extra time (the first import of the server stack, building the
  emulator or starting the server), paid once per session (per xdist worker);
- amortised: (the loop's time - the baseline loop's time) / tests, both of the above.

Each figure printed is the median over the runs. It reports against the targets of issue 19
(analytics_mock <= 5 ms, analytics_mock_server <= 10 ms a test, one GET included); it does not
assert. Exit status 0 when everything ran, 2 when a run failed.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

TARGETS_MS = {"analytics_mock": 5.0, "analytics_mock_server": 10.0}

CONFTEST = """
import json, os, time
import pytest

_times = {"tests": []}

@pytest.hookimpl(tryfirst=True)
def pytest_runtestloop(session):
    _times["start"] = time.perf_counter()

@pytest.hookimpl(wrapper=True)
def pytest_runtest_protocol(item, nextitem):
    started = time.perf_counter()
    try:
        return (yield)
    finally:
        _times["tests"].append(time.perf_counter() - started)

@pytest.hookimpl(trylast=True)
def pytest_sessionfinish(session):
    if "start" in _times:
        elapsed = time.perf_counter() - _times["start"]
        with open(os.environ["FIXTURE_BENCH_OUT"], "w") as out:
            json.dump({"seconds": elapsed, "tests": _times["tests"]}, out)
"""

TESTS = {
    "baseline": """
import pytest

@pytest.mark.parametrize("i", range({tests}))
def test_nothing(i):
    pass
""",
    "analytics_mock": """
import pytest

@pytest.mark.parametrize("i", range({tests}))
def test_get(analytics_mock, i):
    answer = analytics_mock.client.get("/Analytics/v1/objects/EmailServerSettings")
    assert answer.status_code == 200
""",
    "analytics_mock_server": """
import pytest

@pytest.mark.parametrize("i", range({tests}))
def test_get(analytics_mock_server, i):
    answer = analytics_mock_server.client.get("/Analytics/v1/objects/EmailServerSettings")
    assert answer.status_code == 200
""",
}


def run_once(project: Path, name: str) -> dict[str, float]:
    """One pytest process: the loop's seconds, the median and the first test's seconds."""
    out = project / f"{name}.json"
    env = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith(("PYTEST_", "ANALYTICS_MOCK_"))
    }
    env["FIXTURE_BENCH_OUT"] = str(out)
    done = subprocess.run(  # noqa: S603 - our own interpreter and arguments
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", f"test_{name}.py"],
        cwd=project,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    if done.returncode != 0 or not out.exists():
        raise RuntimeError(f"{name} run failed:\n{done.stdout[-3000:]}{done.stderr[-3000:]}")
    result = json.loads(out.read_text())
    out.unlink()
    tests = result["tests"]
    return {
        "loop": float(result["seconds"]),
        "median": statistics.median(tests),
        "first": float(tests[0]),
    }


def main() -> int:
    """Measure, print, and return the exit status."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--tests", type=int, default=200)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="analytics-mock-fixture-bench-") as directory:
        project = Path(directory)
        (project / "conftest.py").write_text(CONFTEST)
        (project / "pytest.ini").write_text("[pytest]\naddopts = -p no:randomly\n")
        for name, source in TESTS.items():
            (project / f"test_{name}.py").write_text(source.replace("{tests}", str(args.tests)))
        figures: dict[str, dict[str, list[float]]] = {
            name: {"per test": [], "one-off": [], "amortised": []} for name in TARGETS_MS
        }
        baseline_ms: list[float] = []
        try:
            for _ in range(args.runs):
                # One round: the baseline and both fixtures, back to back, so that they share
                # the machine's state (load, caches) as far as they can.
                rounds = {name: run_once(project, name) for name in TESTS}
                base = rounds["baseline"]
                baseline_ms.append(base["median"] * 1000)
                for name in TARGETS_MS:
                    run = rounds[name]
                    figures[name]["per test"].append((run["median"] - base["median"]) * 1000)
                    figures[name]["one-off"].append((run["first"] - base["first"]) * 1000)
                    amortised = (run["loop"] - base["loop"]) / args.tests * 1000
                    figures[name]["amortised"].append(amortised)
        except (RuntimeError, subprocess.TimeoutExpired) as exc:
            print(exc, file=sys.stderr)
            return 2

    print(f"pytest fixtures: {args.tests} tests a run, one GET each; median of {args.runs} runs")
    print(f"baseline (no fixture): {statistics.median(baseline_ms):.3f} ms a test")
    print(
        f"{'fixture':<24}{'per test (ms)':>15}{'target':>8}  met"
        f"{'one-off (ms)':>15}{'amortised (ms)':>16}"
    )
    for name, target in TARGETS_MS.items():
        values = {kind: statistics.median(runs) for kind, runs in figures[name].items()}
        met = "yes" if values["per test"] <= target else "NO "
        print(
            f"{name:<24}{values['per test']:>15.3f}{target:>8.1f}  {met}"
            f"{values['one-off']:>15.1f}{values['amortised']:>16.3f}"
        )
    print("per test: median test minus the baseline's; one-off: first test's extra;")
    print(f"amortised: (loop - baseline loop) / {args.tests}")
    every = {
        name: {kind: [round(v, 3) for v in runs] for kind, runs in kinds.items()}
        for name, kinds in figures.items()
    }
    print("every run:", json.dumps(every))
    return 0


if __name__ == "__main__":
    sys.exit(main())
