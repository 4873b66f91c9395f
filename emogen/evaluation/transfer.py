"""The emotion-transfer table: does "<emotion> box" keep the box and still carry the emotion?

No published code measures this (users of the official repo report that "{} bag" loses the
bag). For each transfer template of ``data/generated/emogen_transfer/``: Emo-A of its images
and the share in which the object classifier still finds the template's word.
"""

from __future__ import annotations

import numpy as np

from emogen.config import EvaluateParams
from emogen.evaluation import metrics as m
from emogen.evaluation.data import ImageSet
from emogen.evaluation.evaluators import Evaluators


def template_word(template: str) -> str:
    """What a transfer template names besides the emotion: ``"{} box"`` → ``"box"``."""
    return " ".join(template.replace("{}", " ").split())


def transfer_table(evaluators: Evaluators, images: ImageSet, params: EvaluateParams, rng: np.random.Generator) -> dict:
    templates = list(dict.fromkeys(entry.get("template", "{}") for entry in images.entries))
    rows = {}
    for template in templates:
        idx = np.array([i for i, entry in enumerate(images.entries) if entry.get("template", "{}") == template])
        chosen = [images.images[i] for i in idx]
        labels = images.labels[idx]
        probs = evaluators.emotion_probs(chosen)
        word = template_word(template)
        found = evaluators.finds(chosen, word).astype(np.float64)

        def interval(statistic, n: int = len(idx)) -> dict:
            return m.bootstrap(statistic, n, params.bootstrap_samples, params.confidence, rng).to_dict()

        rows[template] = {
            "word": word,
            "images": len(idx),
            "emo_a": interval(lambda s, probs=probs, labels=labels: m.emotion_accuracy(probs[s], labels[s])["emo_a"]),
            "object_kept": interval(lambda s, found=found: float(found[s].mean())),
        }
    return {"stand_in": evaluators.stand_in, "evaluators": {"emo_a": evaluators.names["emo_a"],
            "object_kept": evaluators.names["sem_c"]}, "templates": rows}
