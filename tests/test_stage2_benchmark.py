"""benchmarks/stage2.py runs at the tiny shape on CPU and prints both rates and their ratio (CI smoke test)."""

import re
import runpy
from pathlib import Path

BENCHMARK = Path(__file__).resolve().parents[1] / "benchmarks" / "stage2.py"


def test_stage2_benchmark_prints_both_rates_and_a_ratio(capsys):
    main = runpy.run_path(str(BENCHMARK), run_name="benchmark")["main"]
    ratio = main(["--shape", "tiny", "--steps", "1", "--warmup", "0", "--batch-size", "2", "--device", "cpu",
                  "--gradient-checkpointing"])
    out = capsys.readouterr().out
    assert re.search(r"ours: +\d+\.\d\d samples/s", out) and re.search(r"published-like: +\d+\.\d\d samples/s", out)
    assert re.search(r"speed-up: \d+\.\d\dx", out) and ratio > 0
    assert "gradient checkpointing True" in out
