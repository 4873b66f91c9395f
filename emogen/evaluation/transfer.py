"""The emotion-transfer table: does "<emotion> box" keep the box and still carry the emotion?

No published code measures this (users of the official repo report that "{} bag" loses the
bag). For each transfer template of ``data/generated/emogen_transfer/`` and of every baseline
folder ``data/generated/<method>_transfer/`` (the same templates and seeds; the prompt
baseline puts the emotion word in the template: "amusement box"): Emo-A of the images (the
headline judge), the share in which the object classifier still finds the template's word,
and EmoGen minus each baseline, paired over the shared seeds.
"""

from __future__ import annotations

import numpy as np

from emogen.config import EvaluateParams
from emogen.errors import UserError
from emogen.evaluation import statistics as st
from emogen.evaluation.data import ImageSet
from emogen.evaluation.evaluators import Evaluators

TRANSFER_METRICS = ("emo_a", "object_kept")


def template_word(template: str) -> str:
    """What a transfer template names besides the emotion: ``"{} box"`` → ``"box"``."""
    return " ".join(template.replace("{}", " ").split())


def _cells(images: ImageSet) -> dict[str, np.ndarray]:
    """Template → its images' indices, in index order."""
    templates = list(dict.fromkeys(entry.get("template", "{}") for entry in images.entries))
    return {
        t: np.array([i for i, entry in enumerate(images.entries) if entry.get("template", "{}") == t])
        for t in templates
    }


def _key(images: ImageSet, idx: np.ndarray) -> list[tuple]:
    return [(images.entries[i].get("emotion"), images.entries[i].get("seed")) for i in idx]


def transfer_table(
    evaluators: Evaluators, sets: dict[str, ImageSet], params: EvaluateParams, rng: np.random.Generator, reference: str
) -> dict:
    """``sets``: method → its transfer images (``reference`` first among them). Per template and
    method: Emo-A and object kept with intervals; per baseline: reference − baseline, paired."""
    cells = {method: _cells(images) for method, images in sets.items()}
    ref_cells = cells[reference]
    rows: dict[str, dict] = {}
    for template, ref_idx in ref_cells.items():
        ref_images = sets[reference]
        labels = ref_images.labels[ref_idx]
        counts = st.bootstrap_images(labels, params.bootstrap_samples, rng)
        row: dict = {"word": template_word(template), "images": len(ref_idx), "methods": {}, "comparisons": {}}
        results: dict[str, dict[str, tuple[float, np.ndarray]]] = {}
        for method, images in sets.items():
            idx = cells[method].get(template)
            if idx is None:
                raise UserError(
                    f"{method} transfer images have no template {template!r} "
                    f"({reference} has; regenerate both with the same generate.transfer_templates)"
                )
            if _key(images, idx) != _key(ref_images, ref_idx):
                raise UserError(
                    f"{method} transfer images of {template!r} do not have {reference}'s emotions and seeds "
                    "in the same order: paired comparisons need the same seeds"
                )
            chosen = [images.images[i] for i in idx]
            correct = (evaluators.emotion_probs(chosen).argmax(1) == labels).astype(np.float64)
            found = evaluators.finds(chosen, row["word"]).astype(np.float64)
            results[method] = {
                k: (float(v.mean()), st.weighted_mean(v, counts))
                for k, v in (("emo_a", correct), ("object_kept", found))
            }
            row["methods"][method] = {
                k: st.percentile_interval(v, d, params.confidence).to_dict() for k, (v, d) in results[method].items()
            }
        for method in sets:
            if method != reference:
                row["comparisons"][method] = {
                    k: st.paired_bootstrap(
                        results[reference][k][0],
                        results[method][k][0],
                        results[reference][k][1],
                        results[method][k][1],
                        params.confidence,
                    )
                    for k in TRANSFER_METRICS
                }
        # the reference's own cells at the top level, as before
        row.update(row["methods"][reference])
        rows[template] = row
    return {
        "stand_in": evaluators.stand_in,
        "reference": reference,
        "methods": list(sets),
        "evaluators": {"emo_a": evaluators.names["emo_a"], "object_kept": evaluators.names["sem_c"]},
        "templates": rows,
    }
