"""Test inputs for the registry and the flows: a tiny random generator in a repo layout and a
Table 1 whose numbers are TEST INPUTS (fixture values, not measurements).

``write_generator(root)`` writes ``models/base`` (an embedded-profile base.json with paths
relative to ``root`` and the tiny model folders under it), ``models/stage2`` and
``models/emotion_space/gaussians.safetensors`` — what the ``generate`` stage builds from.
``write_table1(path, emo_a, fid)`` writes ``metrics/table1.json`` in the agreed shape.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from tests.helpers.generation_inputs import write_upstream


def write_generator(root: Path, seed: int = 0) -> Path:
    root = Path(root)
    write_upstream(root, seed=seed)
    base = root / "models" / "base"
    shutil.move(str(root / "tiny"), str(base / "tiny"))
    info = json.loads((base / "base.json").read_text())
    info.update(pipeline="models/base/tiny/pipeline", clip="models/base/tiny/clip")
    (base / "base.json").write_text(json.dumps(info))
    return root


def write_table1(path: Path, emo_a: float | None, fid: float | None) -> Path:
    def metric(value):
        return (
            {"value": value, "low": value, "high": value}
            if value is not None
            else {"value": None, "note": "not computed: test input"}
        )

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(
        json.dumps(
            {
                "profile": "embedded",
                "stand_in": True,
                "test_inputs": "fixture values written by the tests, not measured",
                "evaluators": {"emo_a": "test fixture", "fid": "test fixture"},
                "images_per_emotion": 2,
                "bootstrap": {"samples": 0, "confidence": 0.95},
                "methods": {"emogen": {"emo_a": metric(emo_a), "fid": metric(fid)}},
            },
            indent=1,
        )
    )
    return path
