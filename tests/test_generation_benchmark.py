"""benchmarks/generate.py runs at the tiny shapes on CPU and prints a speed ratio (CI smoke test): pixel
space in float32 (the project's loop) and a tiny latent model in float16 (diffusers' SD pipeline)."""

import re
import runpy
from pathlib import Path

import pytest

BENCHMARK = Path(__file__).resolve().parents[1] / "benchmarks" / "generate.py"


# Largest pixel difference between batched and one-by-one images: float32 round-off, or half's.
@pytest.mark.parametrize(("shape", "dtype", "tolerance"), [("tiny", "float32", 2), ("tiny_sd", "float16", 8)])
def test_generation_benchmark_prints_a_ratio(capsys, shape, dtype, tolerance):
    main = runpy.run_path(str(BENCHMARK), run_name="benchmark")["main"]
    ratio = main(
        [
            "--shape",
            shape,
            "--emotions",
            "2",
            "--images-per-emotion",
            "2",
            "--steps",
            "2",
            "--device",
            "cpu",
            "--dtype",
            dtype,
        ]
    )
    out = capsys.readouterr().out
    # The printed speed-up is the returned ratio, and the ratio of the two printed rates.
    assert re.search(r"speed-up: (\d+\.\d\d)x", out).group(1) == f"{ratio:.2f}"
    ours = float(re.search(r"batched \(ours\): +(\d+\.\d\d) images/s", out).group(1))
    loop = float(re.search(r"per-image loop: +(\d+\.\d\d) images/s", out).group(1))
    assert ours / loop == pytest.approx(ratio, rel=0.02)
    assert "largest pixel difference" in out
    difference = int(re.search(r"largest pixel difference (\d+)", out).group(1))
    assert difference <= tolerance  # both paths generate the same images
    assert f"torch.{dtype}" in out
