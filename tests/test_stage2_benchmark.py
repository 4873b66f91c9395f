"""benchmarks/stage2.py runs at the tiny shape on CPU and prints both rates and their ratio (CI smoke test)."""

import re
import runpy
from pathlib import Path

import pytest

BENCHMARK = Path(__file__).resolve().parents[1] / "benchmarks" / "stage2.py"


def test_stage2_benchmark_prints_both_rates_and_a_ratio(capsys):
    main = runpy.run_path(str(BENCHMARK), run_name="benchmark")["main"]
    ratio = main(
        [
            "--shape",
            "tiny",
            "--steps",
            "1",
            "--warmup",
            "0",
            "--batch-size",
            "2",
            "--device",
            "cpu",
            "--gradient-checkpointing",
        ]
    )
    out = capsys.readouterr().out
    # The printed speed-up is the returned ratio, and the ratio of the two printed rates.
    ours = float(re.search(r"ours: +(\d+\.\d\d) samples/s", out).group(1))
    theirs = float(re.search(r"published-like: +(\d+\.\d\d) samples/s", out).group(1))
    assert re.search(r"speed-up: (\d+\.\d\d)x", out).group(1) == f"{ratio:.2f}"
    assert ours / theirs == pytest.approx(ratio, rel=0.02)
    assert "gradient checkpointing True" in out
