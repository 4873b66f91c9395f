"""benchmarks/generate.py runs at the tiny shape on CPU and prints a speed ratio (CI smoke test)."""

import re
import runpy
from pathlib import Path

BENCHMARK = Path(__file__).resolve().parents[1] / "benchmarks" / "generate.py"


def test_generation_benchmark_prints_a_ratio(capsys):
    main = runpy.run_path(str(BENCHMARK), run_name="benchmark")["main"]
    ratio = main(["--shape", "tiny", "--emotions", "2", "--images-per-emotion", "2", "--steps", "2",
                  "--device", "cpu"])
    out = capsys.readouterr().out
    assert re.search(r"speed-up: \d+\.\d\dx", out) and ratio > 0
    assert "largest pixel difference" in out
    difference = int(re.search(r"largest pixel difference (\d+)", out).group(1))
    assert difference <= 2  # both paths generate the same images
