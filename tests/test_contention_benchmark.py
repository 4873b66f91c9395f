"""benchmarks/contention.py: a tiny real run (its workers, the old and new policy) and the
table and target verdicts it prints for two at once."""

import math
import re
import runpy
from pathlib import Path

BENCHMARK = Path(__file__).resolve().parents[1] / "benchmarks" / "contention.py"


def _benchmark() -> dict:
    return runpy.run_path(str(BENCHMARK), run_name="benchmark")


def test_contention_benchmark_runs_both_policies(capsys, tmp_path):
    result = _benchmark()["main"](
        [
            "--workloads",
            "generate",
            "--counts",
            "1",
            "--policies",
            "new",
            "--seconds",
            "1",
            "--warmup",
            "0",
            "--json",
            str(tmp_path / "out.json"),
        ]
    )
    out = capsys.readouterr().out
    groups = {(r["policy"], r["processes"]): r for r in result["rows"]}
    assert set(groups) == {("old", 1), ("new", 1)}  # old is always run: the reference
    for r in groups.values():
        assert len(r["step_s"]) == 1 and all(s > 0 and math.isfinite(s) for s in r["step_s"])
    assert re.search(r"generate: idle single run, old policy: \d+\.\d ms/step", out)
    assert re.search(r"^(PASS|FAIL)  generate: one alone, ≤ 1.10x of today$", out, re.MULTILINE)
    assert (tmp_path / "out.json").is_file()


def test_ratios_and_verdicts_for_two_at_once():
    def row(policy, n, step_s, low=False):
        return {
            "workload": "train",
            "policy": policy,
            "processes": n,
            "step_s": step_s,
            "steps": [5] * n,
            "threads": [1] * n,
            "lower_bound": [low] * n,
        }

    rows = [
        row("old", 1, [0.1]),
        row("new", 1, [0.105]),
        row("old", 2, [7.0, 7.0], low=True),
        row("new", 2, [0.2, 0.3]),
    ]
    lines, verdicts = _benchmark()["summarize"](rows)
    text = "\n".join(lines)
    assert "≥7000.0/≥7000.0" in text and "70.00x" in text  # the old policy's collapse, as a lower bound
    assert "slowest 3.00x of idle" in text and "together 0.80x idle throughput" in text
    assert verdicts == {
        "train: two at once, each ≤ 2.5x": False,
        "train: two at once, together ≥ 0.8x": True,
        "train: one alone, ≤ 1.10x of today": True,
    }
