"""Start-up (issue 20 point 5): each stage imports only what it uses, and benchmarks/startup.py
measures it."""

import json
import runpy
import subprocess
import sys
from pathlib import Path

from emogen.cli import STAGES

REPO = Path(__file__).resolve().parents[1]
BENCHMARK = REPO / "benchmarks" / "startup.py"
HEAVY = ("torch", "diffusers", "transformers", "accelerate")
NO_TORCH = ["prepare_data", "ingest", "validate", "balance", "report"]


def _loaded(modules: list[str]) -> list[str]:
    code = (
        f"import sys, json, emogen.cli, {', '.join(modules)}; "
        f"print(json.dumps([m for m in {HEAVY!r} if m in sys.modules]))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True, timeout=300
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_data_stages_and_the_report_import_no_torch():
    # All in one interpreter (one start-up): if none of them loads torch, together they load none.
    assert _loaded([STAGES[stage].partition(":")[0] for stage in NO_TORCH]) == []


def test_startup_benchmark_prints_a_stage(capsys):
    rows = runpy.run_path(str(BENCHMARK), run_name="benchmark")["main"](["--stages", "balance", "--repeat", "1"])
    out = capsys.readouterr().out
    assert len(rows) == 1 and rows[0]["stage"] == "balance" and rows[0]["seconds"] > 0 and rows[0]["target"] == 3.0
    assert "torch" not in rows[0]["heavy"] and "mlflow" in rows[0]["heavy"]
    assert "balance" in out and "bare interpreter" in out
