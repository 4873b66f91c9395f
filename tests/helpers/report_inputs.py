"""Test fixtures: every input of the report stage, small, in the agreed shapes.

Test fixtures, not pipeline outputs: Table 1, the transfer table, the intensity result and
the α table hold made-up numbers of the agreed shapes (the evaluate / intensity stages are
built on other branches); generated folders are written by the real ``write_generated`` from
random-pattern images; the curves and the validation summary copy their stages' columns.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

from emogen.emotions import EMOTIONS
from emogen.layout import Layout
from emogen.pipelines.writer import ImageRecord, write_generated

METHODS = ("emogen", "prompt", "textual_inversion", "dreambooth")
TEMPLATES = ("{} box", "{} chair")
IMAGES_PER_EMOTION = 3


def pattern(rng: np.random.Generator, size: int = 16) -> Image.Image:
    return Image.fromarray(rng.integers(0, 256, size=(size, size, 3), dtype=np.uint8))


def interval(value: float, width: float = 0.05) -> dict:
    return {"value": value, "low": value - width, "high": value + width}


def write_report_inputs(root: Path, seed: int = 0) -> Layout:
    layout = Layout(root)
    rng = np.random.default_rng(seed)
    m = layout.metrics
    m.mkdir(parents=True, exist_ok=True)
    for method in METHODS:
        records = (
            (ImageRecord(e, e, n, "{}", "single"), pattern(rng)) for e in EMOTIONS for n in range(IMAGES_PER_EMOTION)
        )
        write_generated(layout.generated / method, method, records, grid_cell=16)
    records = ((ImageRecord(e, e, 0, t, "single"), pattern(rng)) for t in TEMPLATES for e in EMOTIONS)
    write_generated(layout.generated / "emogen_transfer", "emogen", records, grid_cell=16)

    methods = {
        method: {
            "emo_a": interval(0.5 - 0.05 * k),
            "emo_a_clip": interval(0.55 - 0.07 * k),
            "emo_a_target_prob": interval(0.4),
            "emo_a_polarity": interval(0.8),
            "fid": {"value": 40.0 + k},
            "kid": interval(0.01 * (k + 1), 0.004),
            "lpips": {"value": None, "note": "not computed: install lpips"},
            "sem_c": interval(0.6),
            "sem_d": interval(0.03, 0.004),
            "sem_d_cosine": interval(0.2),
        }
        for k, method in enumerate(METHODS)
    }
    table1 = {
        "profile": "embedded",
        "stand_in": True,
        "evaluators": {
            "emo_a": "content-net emotion head (independent judge)",
            "emo_a_clip": "clip-embedded linear probe (shares the generators' CLIP)",
            "sem_c": "content net (stand-in)",
            "fid": "content net features (stand-in)",
            "lpips": "not available",
            "sem_d": "clip-embedded (stand-in)",
        },
        "images_per_emotion": IMAGES_PER_EMOTION,
        "bootstrap": {"samples": 1000, "confidence": 0.95},
        "methods": methods,
        "comparisons_reference": "emogen",
        "comparisons": {
            method: {
                "emo_a": {
                    "difference": 0.05 * k,
                    "low": 0.05 * k - 0.04,
                    "high": 0.05 * k + 0.04,
                    "se": 0.02,
                    "verdict": "higher" if 0.05 * k - 0.04 > 0 else "no difference detected",
                },
                "kid": {
                    "difference": -0.01 * k,
                    "low": -0.01 * k - 0.005,
                    "high": -0.01 * k + 0.005,
                    "se": 0.002,
                    "verdict": "lower",
                },
            }
            for k, method in enumerate(METHODS)
            if method != "emogen"
        },
    }
    (m / "table1.json").write_text(json.dumps(table1))
    with open(m / "table1_per_emotion.csv", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["method", "emotion", "emo_a", "sem_c"])
        writer.writerows([method, e, 0.5, 0.6] for method in METHODS for e in EMOTIONS)
    (m / "transfer.json").write_text(
        json.dumps(
            {
                "stand_in": True,
                "evaluators": {"emo_a": "probe (stand-in)", "object_kept": "content net (stand-in)"},
                "reference": "emogen",
                "methods": ["emogen", "prompt"],
                "templates": {
                    t: {
                        "word": t.split()[-1],
                        "images": 8,
                        "emo_a": interval(0.3),
                        "object_kept": interval(0.7),
                        "methods": {
                            "emogen": {"emo_a": interval(0.3), "object_kept": interval(0.7)},
                            "prompt": {"emo_a": interval(0.4), "object_kept": interval(0.9)},
                        },
                        "comparisons": {
                            "prompt": {
                                "emo_a": {
                                    "difference": -0.1,
                                    "low": -0.2,
                                    "high": 0.01,
                                    "se": 0.05,
                                    "verdict": "no difference detected",
                                },
                                "object_kept": {
                                    "difference": -0.2,
                                    "low": -0.3,
                                    "high": -0.1,
                                    "se": 0.05,
                                    "verdict": "lower",
                                },
                            }
                        },
                    }
                    for t in TEMPLATES
                },
            }
        )
    )
    (m / "intensity.json").write_text(
        json.dumps(
            {
                "evaluator": "clip-embedded linear probe",
                "stand_in": True,
                "rule": "e = c + s·(x − c)",
                "images_per_emotion": 2,
                "template": "{}",
                "chance": 0.125,
                "rises": True,
                "points": [
                    {
                        "intensity": s,
                        "mean_target_prob": interval(0.125 + 0.1 * s),
                        "top1": interval(0.1 + 0.1 * s),
                        "per_emotion": dict.fromkeys(EMOTIONS, 0.2),
                    }
                    for s in (0.0, 0.5, 1.0, 1.5)
                ],
            }
        )
    )
    pattern(rng, 40).save(m / "intensity_strip.png")
    pattern(rng, 48).save(m / "emotion_space_pca.png")

    alpha = rng.dirichlet(np.ones(8), size=6)
    frame = pd.DataFrame(alpha, columns=list(EMOTIONS))
    frame.insert(0, "count", [10, 20, 30, 40, 50, 60])
    frame.insert(0, "kind", ["object", "scene"] * 3)
    frame.insert(0, "attribute", ["balloon", "beach", "spider", "forest", "skull", "sky"])
    layout.model_dir("confidence").mkdir(parents=True)
    frame.to_parquet(layout.model_dir("confidence") / "alpha.parquet")

    curves = {
        "stage1_history.csv": ["epoch", "train_loss", "train_accuracy", "val_loss", "val_accuracy", "lr"],
        "base_model_clip_loss.csv": ["step", "loss"],
        "base_model_unet_loss.csv": ["step", "loss"],
        "stage2_loss.csv": ["step", "l_ldm", "l_attr", "loss", "attr_acc", "attr_samples"],
    }
    for file, columns in curves.items():
        with open(m / file, "w", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(columns)
            writer.writerows([i + 1, *rng.random(len(columns) - 1)] for i in range(5))
    (m / "validate.json").write_text(
        json.dumps(
            {
                "success": True,
                "evaluated": 2,
                "failed": 0,
                "checks": {
                    "manifest.emotion.be_in_set": {"success": True, "unexpected": 0, "rows": 40},
                    "manifest.id.be_unique": {"success": True, "unexpected": 0, "rows": 40},
                },
            }
        )
    )
    return layout
