"""Lists of images to generate (one seed each) run through the pipeline in batches.

Each image gets its own ``torch.Generator`` seeded with its seed (on the CPU, so the
same seed draws the same vector and noise on any device); consecutive images that share a
prompt template and fusion mode are batched together.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import torch
from PIL import Image
from tqdm.auto import tqdm

from emogen.emotions import emotion_index
from emogen.errors import UserError
from emogen.pipelines.emogen_pipeline import EmoGenPipeline, Fusion
from emogen.pipelines.prompt_pipeline import PromptPipeline
from emogen.pipelines.sampling import vector_sha256
from emogen.pipelines.writer import ImageRecord
from emogen.threads import recheck_threads


@dataclass(frozen=True)
class ImageJob:
    emotion: str
    seed: int
    template: str = "{}"
    group: str = ""  # output folder; "" = the emotion
    emotion_2: str | None = None  # fusion partner
    fusion: Fusion | None = None
    weight: float | None = None  # interpolation weight w of emotion_2
    intensity: float = 1.0  # 0: neutral centre, 1: the emotion's Gaussian, > 1: beyond


def check_emotions(names: Sequence[str]) -> list[str]:
    """Validate names early (before loading any model); the error lists the eight."""
    for name in names:
        try:
            emotion_index(name)
        except ValueError as exc:
            raise UserError(str(exc)) from None
    return list(names)


def _batches(jobs: Sequence[ImageJob], size: int) -> Iterator[list[ImageJob]]:
    batch: list[ImageJob] = []
    for job in jobs:
        if batch and (len(batch) == size or (job.template, job.fusion) != (batch[0].template, batch[0].fusion)):
            yield batch
            batch = []
        batch.append(job)
    if batch:
        yield batch


def run_jobs(
    pipe: EmoGenPipeline | PromptPipeline,
    jobs: Sequence[ImageJob],
    batch_size: int,
    desc: str = "generating",
    **call_kwargs,
) -> Iterator[tuple[ImageRecord, Image.Image]]:
    """Generate every job (a tqdm bar counts images); yields (record, image) in job order.
    ``call_kwargs`` go to the pipeline (num_inference_steps, guidance_scale, ...)."""
    with tqdm(total=len(jobs), desc=desc, unit="img") as bar:
        for batch in _batches(jobs, batch_size):
            recheck_threads()
            first = batch[0]
            out = pipe(
                [job.emotion for job in batch],
                template=first.template,
                fuse_with=[job.emotion_2 for job in batch] if first.fusion else None,
                fusion=first.fusion or "interpolate",
                weight=[0.5 if job.weight is None else job.weight for job in batch],
                intensity=[job.intensity for job in batch],
                generator=[torch.Generator().manual_seed(job.seed) for job in batch],
                **call_kwargs,
            )
            vectors = [None] * len(batch) if out.emotion_vectors is None else out.emotion_vectors
            for job, image, vector in zip(batch, out.images, vectors, strict=True):
                yield (
                    ImageRecord(
                        group=job.group or job.emotion,
                        emotion=job.emotion,
                        seed=job.seed,
                        template=job.template,
                        mode=job.fusion or "single",
                        vector_sha256=None if vector is None else vector_sha256(vector),
                        emotion_2=job.emotion_2,
                        weight=job.weight,
                        intensity=None if vector is None else job.intensity,  # EmoGen's vectors only
                    ),
                    image,
                )
            bar.update(len(batch))
