"""Where the suite's time goes: wall time vs CPU time, per test and per run.

A pytest plugin (loaded by tests/conftest.py). For every test it measures,
over setup + call + teardown:
- wall: elapsed seconds;
- cpu: CPU seconds of the pytest process and the children it waited for;
- machine: CPU seconds the whole machine spent (from /proc/stat), which
  includes the PostgreSQL servers, kube-apiserver and subprocesses a test
  drives but does not wait for. With several xdist workers this overlaps
  other tests' work, so it is an upper bound.

At the end of the run it prints the run's wall and machine CPU time and the
slowest tests with all three figures: a test whose wall is far above its
machine CPU is waiting (sleeps, polls, timeouts), not working. Timing is
reported, never asserted. `PGSR_TIMING_JSON=path` also writes every test's
figures as JSON, with when it began and on which xdist worker.
"""

from __future__ import annotations

import json
import os
import resource
import time
from pathlib import Path
from typing import Any

import pytest

_KEY = "pgsr-timing"
_TICK = os.sysconf("SC_CLK_TCK")


def machine_cpu_seconds() -> float:
    """Busy CPU seconds of the whole machine since boot (all cores)."""
    try:
        fields = Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]
    except OSError:
        return 0.0
    values = [int(v) for v in fields]
    idle = values[3] + (values[4] if len(values) > 4 else 0)   # idle + iowait
    guest = sum(values[8:10]) if len(values) > 9 else 0        # already in user/nice
    return (sum(values) - idle - guest) / _TICK


def process_cpu_seconds() -> float:
    own = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


class Timing:
    """Collects per-test figures (on each xdist worker) and reports them (on the
    controller, which receives them with the teardown reports)."""

    def __init__(self) -> None:
        self.results: list[dict[str, Any]] = []
        self.run_start = (time.perf_counter(), machine_cpu_seconds())

    @pytest.hookimpl(tryfirst=True)
    def pytest_runtest_setup(self, item: pytest.Item) -> None:
        item.stash[_start_key] = (time.perf_counter(), process_cpu_seconds(),
                                  machine_cpu_seconds())
        item.stash[_began_key] = time.time()

    @pytest.hookimpl(hookwrapper=True)
    def pytest_runtest_makereport(self, item: pytest.Item, call: pytest.CallInfo):
        if call.when == "teardown" and _start_key in item.stash:
            wall0, cpu0, machine0 = item.stash[_start_key]
            item.user_properties.append((_KEY, {
                "wall": time.perf_counter() - wall0,
                "cpu": process_cpu_seconds() - cpu0,
                "machine": machine_cpu_seconds() - machine0,
                "began": item.stash[_began_key],
                "worker": os.environ.get("PYTEST_XDIST_WORKER", "main"),
            }))
        yield

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        if report.when != "teardown":
            return
        for key, value in report.user_properties:
            if key == _KEY:
                self.results.append({"test": report.nodeid, **value})

    def pytest_terminal_summary(self, terminalreporter: Any) -> None:
        if not self.results:
            return
        wall0, machine0 = self.run_start
        wall = time.perf_counter() - wall0
        machine = machine_cpu_seconds() - machine0
        write = terminalreporter.write_line
        terminalreporter.section("time: wall vs CPU")
        write(f"run: {wall:.1f} s wall, {machine:.1f} s machine CPU on {os.cpu_count()} cores "
              f"({machine / wall / (os.cpu_count() or 1) * 100 if wall else 0:.0f}% busy); "
              f"{len(self.results)} tests, sum of test wall {sum(r['wall'] for r in self.results):.1f} s")
        slowest = sorted(self.results, key=lambda r: r["wall"], reverse=True)[:20]
        if slowest:
            write(f"{'wall s':>8} {'cpu s':>8} {'machine s':>10}  test (20 slowest)")
            for r in slowest:
                write(f"{r['wall']:8.1f} {r['cpu']:8.1f} {r['machine']:10.1f}  {r['test']}")
        target = os.environ.get("PGSR_TIMING_JSON")
        if target:
            Path(target).write_text(json.dumps(
                {"wall": wall, "machine_cpu": machine, "tests": self.results}, indent=1))


_start_key = pytest.StashKey[tuple[float, float, float]]()
_began_key = pytest.StashKey[float]()


def pytest_configure(config: pytest.Config) -> None:
    config.pluginmanager.register(Timing(), "pgsr-timing")
