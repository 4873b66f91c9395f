"""Training of the Textual Inversion and DreamBooth baselines on stage 2's data and budget.

Both train with L_LDM (``emogen.pipelines.losses``) on the rows of ``balanced.parquet``, the
images stage 2 trains its mapper on, each row conditioned on its own emotion's prompt. The
images come from the latents stage (both flips of every unique image, encoded once, read
memory-mapped as stage 2 reads them) and the rows are drawn in stage 2's seeded order
(``SampleOrder``), for exactly stage 2's optimizer steps × batch (:func:`stage2_budget`).

- Textual Inversion: one new token per emotion ("<amusement>"); only their 8 input
  embeddings train, through ``encode_with_placeholders`` (differentiable, the table is not
  written until the end); text encoder and UNet stay frozen.
- DreamBooth: one new identifier per emotion ("<v_amusement>", a fixed random embedding: a
  rare token) in the prompt "<v_amusement> amusement"; the whole UNet trains, the text
  encoder stays frozen (the diffusers script's default). Prior preservation: each step also
  denoises as many of the base model's own images for the class prompt (the emotion word),
  sampled before fine-tuning, weighted by ``prior_loss_weight``.
"""

from __future__ import annotations

import logging
import math
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from accelerate import Accelerator
from tqdm.auto import tqdm

from emogen.config import DreamBoothParams, Params, Stage2Params, TextualInversionParams
from emogen.emotions import EMOTIONS
from emogen.errors import DataError
from emogen.images import to_tensor
from emogen.layout import Layout
from emogen.pipelines.components import BaseComponents
from emogen.pipelines.jobs import run_jobs
from emogen.pipelines.losses import ldm_loss, noisy_batch
from emogen.pipelines.placeholder import add_placeholder_tokens, encode_with_placeholders
from emogen.pipelines.prompt_pipeline import PromptPipeline
from emogen.pipelines.settings import emotion_jobs
from emogen.seeding import derived_seed
from emogen.stage2.data import SampleOrder, load_training_data, read_samples, read_vocabulary, stage_inputs
from emogen.stage2.data import TrainingData as Stage2Data
from emogen.threads import recheck_threads

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Budget:
    """Optimizer steps × batch: stage 2's, so no baseline sees more samples than the mapper."""

    steps: int
    batch_size: int
    num_samples: int  # rows of balanced.parquet

    @property
    def samples_seen(self) -> int:
        return self.steps * self.batch_size

    def to_dict(self) -> dict[str, int | float]:
        return {**asdict(self), "samples_seen": self.samples_seen, "epochs": self.samples_seen / self.num_samples}


def stage2_budget(stage2: Stage2Params, num_samples: int) -> Budget:
    """Stage 2's budget (one process): ``max_train_steps`` or one epoch of the balanced rows,
    at its effective batch (per-device batch × accumulation), as ``stage2.train`` counts it."""
    batch = stage2.train_batch_size * stage2.gradient_accumulation_steps
    steps = stage2.max_train_steps if stage2.max_train_steps is not None else math.ceil(num_samples / batch)
    return Budget(steps=steps, batch_size=batch, num_samples=num_samples)


@dataclass
class TrainingData:
    tensors: Stage2Data  # stage 2's: latents of the unique images, row → image
    emotions: torch.Tensor  # (N,) emotion index of each balanced row


def training_data(params: Params, layout: Layout, base: BaseComponents) -> TrainingData:
    """Stage 2's training data (the latents stage's output) and each row's emotion."""
    inputs = stage_inputs(params, layout)
    samples = read_samples(inputs, len(read_vocabulary(inputs.vocabulary)))
    tensors = load_training_data(inputs, samples, base)
    emotions = pd.read_parquet(inputs.balanced, columns=["emotion_idx"])["emotion_idx"].to_numpy()
    bad = np.flatnonzero((emotions < 0) | (emotions >= len(EMOTIONS)))
    if len(bad):
        raise DataError(f"{inputs.balanced}: row {bad[0]} emotion_idx {emotions[bad[0]]} outside [0, {len(EMOTIONS)})")
    return TrainingData(tensors, torch.tensor(emotions, dtype=torch.long))


def _step_seed(seed: int, step: int, stream: int) -> int:
    return derived_seed(seed, stream, step)


def tokenize_prompts(tokenizer, prompts: list[str], device: torch.device) -> torch.Tensor:
    return tokenizer(
        prompts, padding="max_length", max_length=tokenizer.model_max_length, truncation=True, return_tensors="pt"
    ).input_ids.to(device)


class BaselineTrainer:
    """The shared loop: stage 2's row order and draws, one optimiser, a loss per step."""

    def __init__(
        self, data: TrainingData, base: BaseComponents, budget: Budget, seed: int, accelerator: Accelerator
    ) -> None:
        self.data, self.base, self.budget, self.seed, self.accelerator = data, base, budget, seed, accelerator
        self.order = SampleOrder(len(data.tensors), seed)

    def instance_batch(self, step: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """(emotions, noisy latents, timesteps, target) of the step's rows; a function of (seed, step)."""
        rows = self.order.rows(step * self.budget.batch_size, self.budget.batch_size)
        generator = torch.Generator().manual_seed(_step_seed(self.seed, step, 1))
        images = self.data.tensors.image_index[rows]
        flips = torch.randint(0, 2, (len(rows),), generator=generator)
        latents = self.data.tensors.latents.read(images, flips).float()
        return (
            self.data.emotions[rows],
            *noisy_batch(latents, self.base.noise_scheduler, generator, self.accelerator.device),
        )

    def run(self, name: str, step_loss, optimizer, log_every: int, on_log) -> list[dict[str, float]]:
        """``step_loss(step) -> dict`` with a differentiable "loss" and float extras, per step."""
        history = []
        bar = tqdm(range(self.budget.steps), desc=name, unit="step")
        for step in bar:
            recheck_threads()
            terms = step_loss(step)
            self.accelerator.backward(terms["loss"])
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            history.append({"step": step + 1, **{k: float(v.detach()) for k, v in terms.items()}})
            if (step + 1) % log_every == 0 or step + 1 == self.budget.steps:
                recent = history[-log_every:]
                means = {k: sum(r[k] for r in recent) / len(recent) for k in recent[0] if k != "step"}
                bar.set_postfix({k: round(v, 4) for k, v in means.items()})
                on_log(means, step + 1)
        return history


def _adamw(parameters, lr: float, stage2: Stage2Params) -> torch.optim.AdamW:
    """Stage 2's AdamW settings; only the learning rate is the method's own."""
    return torch.optim.AdamW(
        parameters,
        lr=lr,
        betas=(stage2.adam_beta1, stage2.adam_beta2),
        weight_decay=stage2.adam_weight_decay,
        eps=stage2.adam_epsilon,
    )


def emotion_tokens(fmt: str) -> list[str]:
    return [fmt.format(e) for e in EMOTIONS]


def train_textual_inversion(
    trainer: BaselineTrainer, p: TextualInversionParams, stage2: Stage2Params, log_every: int, on_log
) -> tuple[dict[str, str], list[dict[str, float]]]:
    """Learn one token embedding per emotion; writes them into the text encoder's table.
    Returns emotion → prompt (its token) and the loss history."""
    base, device = trainer.base, trainer.accelerator.device
    tokens = emotion_tokens(p.token_format)
    token_ids = add_placeholder_tokens(base.tokenizer, base.text_encoder, tokens)
    table = base.text_encoder.get_input_embeddings().weight
    if p.init == "emotion_word":
        word_ids = [base.tokenizer(e, add_special_tokens=False).input_ids for e in EMOTIONS]
        missing = [e for e, ids in zip(EMOTIONS, word_ids) if len(ids) != 1]
        if missing:
            raise DataError(
                f"baselines.textual_inversion.init emotion_word: {missing} are not single tokens of "
                "the base model (embedded: set prepare_data.emotion_caption_fraction > 0)"
            )
        start = table[[ids[0] for ids in word_ids]].detach().clone()
    else:
        start = table[: min(token_ids)].mean(dim=0, keepdim=True).repeat(len(EMOTIONS), 1).detach()
    embeddings = torch.nn.Parameter(start.float().to(device))
    optimizer = _adamw([embeddings], p.learning_rate, stage2)
    optimizer = trainer.accelerator.prepare(optimizer)
    prompt_ids = tokenize_prompts(base.tokenizer, tokens, device)

    def step_loss(step: int) -> dict[str, torch.Tensor]:
        emotions, noisy, timesteps, target = trainer.instance_batch(step)
        with trainer.accelerator.autocast():
            hidden = encode_with_placeholders(
                base.text_encoder,
                prompt_ids[emotions.to(device)],
                {tid: embeddings[k] for k, tid in enumerate(token_ids)},
            )
            loss = ldm_loss(base.unet(noisy, timesteps, encoder_hidden_states=hidden).sample, target).mean()
        return {"loss": loss, "l_ldm": loss.detach()}

    history = trainer.run("textual_inversion", step_loss, optimizer, log_every, on_log)
    with torch.no_grad():
        table[token_ids] = embeddings.detach().to(table.dtype)
    return dict(zip(EMOTIONS, tokens)), history


@torch.no_grad()
def class_latents(
    pipe: PromptPipeline, base: BaseComponents, num_per_emotion: int, seed: int, batch_size: int
) -> torch.Tensor:
    """(8, K, C, h, w): the base model's own images for each emotion word (DreamBooth's prior,
    generated before fine-tuning, kept as 8-bit images as the diffusers script keeps files)."""
    jobs = emotion_jobs(seed, num_per_emotion, "{}")
    images = [to_tensor(image) for _, image in run_jobs(pipe, jobs, batch_size, desc="dreambooth class images")]
    generator = torch.Generator(device=base.unet.device).manual_seed(seed)  # SD's VAE posterior
    latents = base.encode_images(torch.stack(images), generator=generator).float().cpu()
    return latents.view(len(EMOTIONS), num_per_emotion, *latents.shape[1:])


def train_dreambooth(
    trainer: BaselineTrainer,
    p: DreamBoothParams,
    stage2: Stage2Params,
    prior: torch.Tensor | None,
    log_every: int,
    on_log,
) -> tuple[dict[str, str], list[dict[str, float]]]:
    """Fine-tune the UNet with one identifier per emotion (``prior``: class latents or None).
    Returns emotion → prompt ("<v_amusement> amusement") and the loss history."""
    base, acc, device = trainer.base, trainer.accelerator, trainer.accelerator.device
    identifiers = emotion_tokens(p.identifier_format)
    ids = add_placeholder_tokens(base.tokenizer, base.text_encoder, identifiers)
    table = base.text_encoder.get_input_embeddings().weight
    with torch.no_grad():  # a rare token: a fixed random embedding of the table's own scale
        words = table[: min(ids)]
        generator = torch.Generator().manual_seed(_step_seed(trainer.seed, 0, 3))
        noise = torch.randn(len(ids), table.shape[1], generator=generator).to(table)
        table[ids] = words.mean(dim=0) + noise * words.std(dim=0)
    prompts = {e: f"{v} {e}" for e, v in zip(EMOTIONS, identifiers)}
    with torch.no_grad():
        states = base.text_encoder(
            input_ids=tokenize_prompts(base.tokenizer, list(prompts.values()), device)
        ).last_hidden_state
        class_states = base.text_encoder(
            input_ids=tokenize_prompts(base.tokenizer, list(EMOTIONS), device)
        ).last_hidden_state
    unet = base.unet.requires_grad_(True).train()
    optimizer = _adamw(unet.parameters(), p.learning_rate, stage2)
    unet, optimizer = acc.prepare(unet, optimizer)
    use_prior = prior is not None and p.prior_loss_weight > 0

    def step_loss(step: int) -> dict[str, torch.Tensor]:
        emotions, noisy, timesteps, target = trainer.instance_batch(step)
        hidden = states[emotions.to(device)]
        n = len(emotions)
        if use_prior:  # one class image of the same emotion per row (DreamBooth's paired batch)
            generator = torch.Generator().manual_seed(_step_seed(trainer.seed, step, 2))
            pick = torch.randint(0, prior.shape[1], (n,), generator=generator)
            c_noisy, c_t, c_target = noisy_batch(prior[emotions, pick], base.noise_scheduler, generator, device)
            noisy, timesteps = torch.cat([noisy, c_noisy]), torch.cat([timesteps, c_t])
            target, hidden = torch.cat([target, c_target]), torch.cat([hidden, class_states[emotions.to(device)]])
        with acc.autocast():
            per_sample = ldm_loss(unet(noisy, timesteps, encoder_hidden_states=hidden).sample, target)
        instance = per_sample[:n].mean()
        terms = {"l_ldm": instance.detach()}
        loss = instance
        if use_prior:
            terms["l_prior"] = per_sample[n:].mean().detach()
            loss = instance + p.prior_loss_weight * per_sample[n:].mean()
        return {"loss": loss, **terms}

    history = trainer.run("dreambooth", step_loss, optimizer, log_every, on_log)
    base.unet = acc.unwrap_model(unet).eval().requires_grad_(False)
    return prompts, history


def write_history(path: Path, history: list[dict[str, float]]) -> None:
    """The loss curve as CSV (a DVC plot); the prompt baseline's has no rows (no training)."""
    columns = list(history[0]) if history else ["step", "l_ldm"]
    path.parent.mkdir(parents=True, exist_ok=True)
    pd.DataFrame(history, columns=columns).to_csv(path, index=False)
