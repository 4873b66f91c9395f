"""``emogen stage stage2``: train the emotion mapper (docs/method.md "Stage 2").

Per sample: the stage-1 emotion vector of the training image → mapper → the placeholder's
token embedding in the prompt → frozen text encoder → frozen UNet, with
L = (1 − α)·L_LDM + λ_attr·α·L_attr. Only the mapper has trainable parameters.

Determinism and resume: the rows of every micro-batch (a fresh seeded permutation per
epoch), the flips, noise and timesteps are functions of the seed and the micro-batch's
global position only (so N processes at batch B draw what 1 process at batch B with N
accumulation steps draws: docs/multi-gpu.md), and checkpoints
(accelerate's save_state, ``emogen.checkpoints``) hold the AdamW state, so a run resumed
from a checkpoint ends with the same weights as an uninterrupted one. Checkpoints live in the
workspace's stage-2 cache (``emogen.caches``; outside the DVC output, which DVC deletes before
re-running), keyed by params, inputs (the latents' key: base model, images) and code. The
training images come encoded from the latents stage, memory-mapped.
Multi-GPU: ``accelerate launch --multi_gpu --num_processes N -m emogen stage stage2`` (docs/multi-gpu.md).
"""

from __future__ import annotations

import csv
import hashlib
import json
import logging
import math
import shutil
import time
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path

import torch
from accelerate import Accelerator
from diffusers import DDIMScheduler
from torch import nn
from tqdm.auto import tqdm

from emogen.caches import cache_dir, code_hash, locked
from emogen.checkpoints import Checkpoints
from emogen.config import Params
from emogen.devices import require_launched_processes
from emogen.emotions import EMOTIONS
from emogen.errors import DataError, StoppedEarly, UserError
from emogen.jsonio import write_json
from emogen.layout import Layout
from emogen.pipelines.components import BaseComponents, load_base
from emogen.pipelines.emogen_pipeline import EmoGenPipeline
from emogen.pipelines.grid import make_grid
from emogen.pipelines.losses import (
    attribute_bank,
    attribute_logits,
    attribute_loss,
    ldm_loss,
    noisy_batch,
    total_loss,
)
from emogen.pipelines.mapper import EmotionMapper, MapperConfig
from emogen.pipelines.placeholder import (
    add_placeholder_tokens,
    encode_with_placeholders,
    placeholder_hidden_state,
    second_placeholder,
)
from emogen.pipelines.sampling import EmotionGaussians
from emogen.pipelines.settings import sampler_settings
from emogen.pipelines.text_pipeline import base_modules
from emogen.seeding import derived_seed, stage_seed
from emogen.stage2.data import SampleOrder, load_training_data, read_samples, read_vocabulary, stage_inputs
from emogen.threads import recheck_threads
from emogen.timings import record
from emogen.tracking import log_artifact, log_metrics, stage_run

log = logging.getLogger(__name__)

STAGE = "stage2"
WEIGHT_DTYPES = {"no": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}
HISTORY_FIELDS = ("step", "l_ldm", "l_attr", "loss", "attr_acc", "attr_samples")


def run(params: Params, layout: Layout) -> dict[str, float]:
    started = time.perf_counter()
    accelerator = Accelerator(mixed_precision=params.stage2.mixed_precision)
    require_launched_processes(accelerator)
    trainer = Trainer(params, layout, accelerator)
    tracked = {"seed": params.seed, STAGE: params.stage2.model_dump()}
    with stage_run(STAGE, tracked) if accelerator.is_main_process else nullcontext():
        return train(trainer, layout, started)


@dataclass
class StepOutput:
    loss: torch.Tensor  # scalar, the weighted objective
    ldm: torch.Tensor  # (B,)
    attr: torch.Tensor  # (B,)
    logits: torch.Tensor | None  # (B, V) attribute-bank logits
    vocab_idx: torch.Tensor  # (B,)


@torch.no_grad()
def _loss_totals(out: StepOutput) -> torch.Tensor:
    """(ldm sum, samples, attr sum, attr samples, correct, loss sum) of one micro-batch."""
    known = out.vocab_idx >= 0
    correct = 0.0
    if out.logits is not None:
        correct = (out.logits.argmax(dim=1) == out.vocab_idx)[known].sum().item()
    return torch.tensor(
        [
            out.ldm.sum().item(),
            out.ldm.numel(),
            out.attr[known].sum().item(),
            known.sum().item(),
            correct,
            out.loss.item() * out.ldm.numel(),
        ],
        dtype=torch.float64,
        device=out.loss.device,
    )


def assert_only_mapper_trains(base: BaseComponents, mapper: nn.Module) -> None:
    """docs/method.md: the VAE, UNet, text encoder and CLIP are frozen; every mapper weight trains."""
    for name, module in (
        ("text_encoder", base.text_encoder),
        ("unet", base.unet),
        ("vae", base.vae),
        ("clip_model", base.clip_model),
    ):
        if module is None:
            continue
        trainable = [n for n, p in module.named_parameters() if p.requires_grad]
        if trainable:
            raise RuntimeError(f"stage2: {name} must be frozen, but {trainable[:3]} require grad")
    if not all(p.requires_grad for p in mapper.parameters()):
        raise RuntimeError("stage2: every mapper parameter must be trainable")


def read_gaussians(path: Path, vector_dim: int) -> EmotionGaussians:
    """The emotion space's Gaussians (the preview grids sample from them, as generation does)."""
    gaussians = EmotionGaussians.load(path)
    if gaussians.dim != vector_dim:
        raise DataError(f"{path}: Gaussians of width {gaussians.dim}, but the emotion vectors are {vector_dim} wide")
    return gaussians


class Trainer:
    """Everything one optimiser step needs, built once."""

    def __init__(self, params: Params, layout: Layout, accelerator: Accelerator) -> None:
        p = self.p = params.stage2
        self.accelerator = accelerator
        accelerator.gradient_accumulation_steps = p.gradient_accumulation_steps  # what accumulate() counts
        self.seed = stage_seed(params.seed, STAGE)
        self.inputs = stage_inputs(params, layout)
        self.work_dir = cache_dir(layout, STAGE, p.work_dir)
        base = self.base = load_base(
            self.inputs.base_dir, device=accelerator.device, dtype=WEIGHT_DTYPES[p.mixed_precision]
        )
        # Both of the EmoGen pipeline's tokens (the previews are sampled by it); only the first trains.
        self.token_id, _ = add_placeholder_tokens(
            base.tokenizer, base.text_encoder, [p.placeholder_token, second_placeholder(p.placeholder_token)]
        )
        self.prompt = p.prompt_template.format(p.placeholder_token)
        self.prompt_ids = base.tokenizer(
            [self.prompt],
            padding="max_length",
            max_length=base.tokenizer.model_max_length,
            truncation=True,
            return_tensors="pt",
        ).input_ids.to(accelerator.device)
        if not bool((self.prompt_ids == self.token_id).any()):
            raise UserError(
                f"stage2.prompt_template {p.prompt_template!r}: the placeholder is cut off "
                f"by the tokenizer's max length {base.tokenizer.model_max_length}"
            )
        self.text_width = base.text_encoder.config.hidden_size
        clip_width = base.clip_model.text_projection.in_features
        if clip_width != self.text_width:
            raise UserError(
                f"{self.inputs.base_dir}/base.json: the CLIP model's text width {clip_width} differs "
                f"from the text encoder's {self.text_width}; L_attr needs the text encoder to be "
                "CLIP's text tower (as SD 1.5's is CLIP ViT-L/14's)"
            )

        self.attributes = read_vocabulary(self.inputs.vocabulary)
        self.bank = attribute_bank(base.clip_model, base.clip_tokenizer, self.attributes) if self.attributes else None
        if self.bank is None:
            log.warning("stage2: %s has no attributes: L_attr is 0 throughout", self.inputs.vocabulary)
        if p.gradient_checkpointing:
            base.unet.enable_gradient_checkpointing()  # recompute activations in backward: memory at SD scale
        samples = read_samples(self.inputs, len(self.attributes))
        self.data = load_training_data(self.inputs, samples, base)
        self.order = SampleOrder(len(self.data), self.seed)

        self.vector_dim = self.data.vectors.shape[1]
        self.gaussians = read_gaussians(self.inputs.gaussians, self.vector_dim)
        m = p.mapper
        self.mapper_config = MapperConfig(
            in_dim=self.vector_dim,
            out_dim=self.text_width,
            hidden_dim=m.hidden_dim,
            num_hidden_layers=m.num_hidden_layers,
            kind=m.kind,
            layer_norm=m.layer_norm,
            dropout=m.dropout,
        )
        torch.manual_seed(self.seed)  # mapper initialisation
        mapper = EmotionMapper(self.mapper_config)
        optimizer = torch.optim.AdamW(
            mapper.parameters(),
            lr=p.learning_rate,
            betas=(p.adam_beta1, p.adam_beta2),
            weight_decay=p.adam_weight_decay,
            eps=p.adam_epsilon,
        )
        self.mapper, self.optimizer = accelerator.prepare(mapper, optimizer)
        assert_only_mapper_trains(base, self.mapper)

    @property
    def effective_batch(self) -> int:
        return self.p.train_batch_size * self.p.gradient_accumulation_steps * self.accelerator.num_processes

    def total_steps(self) -> int:
        if self.p.max_train_steps is not None:
            return self.p.max_train_steps
        return math.ceil(len(self.data) / self.effective_batch)  # one epoch (published recipe)

    def run_key(self) -> str:
        """Identifies a training run: resuming needs the same data, params and world size."""
        params = self.p.model_dump(exclude={"stop_after_steps"})  # where it stops is not what it trains
        spec = json.dumps(
            {
                "data": self.data.key,
                "seed": self.seed,
                "params": params,
                "world": self.accelerator.num_processes,
                "code": code_hash(__name__),
            },
            sort_keys=True,
        )
        return hashlib.sha256(spec.encode()).hexdigest()[:16]

    def losses(self, step: int, micro: int) -> StepOutput:
        """The objective of one micro-batch; its draws depend on (seed, its first global sample) only."""
        p, base, acc = self.p, self.base, self.accelerator
        batch = p.train_batch_size
        first = ((step * p.gradient_accumulation_steps + micro) * acc.num_processes + acc.process_index) * batch
        rows = self.order.rows(first, batch)
        draw_seed = derived_seed(self.seed, 1, first)
        generator = torch.Generator().manual_seed(draw_seed)
        torch.manual_seed(draw_seed)  # mapper dropout, when enabled
        images = self.data.image_index[rows]
        flips = torch.randint(0, 2, (batch,), generator=generator)
        latents = self.data.latents.read(images, flips).to(WEIGHT_DTYPES[p.mixed_precision])
        noisy, timesteps, target = noisy_batch(latents, base.noise_scheduler, generator, acc.device)
        device = acc.device
        vectors = self.data.vectors[images].to(device)
        alpha = self.data.alpha[rows].to(device)
        vocab_idx = self.data.vocab_idx[rows].to(device)

        ids = self.prompt_ids.expand(batch, -1)
        with acc.autocast():
            embeddings = self.mapper(vectors)
            hidden = encode_with_placeholders(base.text_encoder, ids, {self.token_id: embeddings})
            prediction = base.unet(noisy, timesteps, encoder_hidden_states=hidden).sample
            ldm = ldm_loss(prediction, target)
            logits = None
            attr = torch.zeros_like(ldm)
            if self.bank is not None:
                at_placeholder = placeholder_hidden_state(hidden, ids, self.token_id)
                logits = attribute_logits(
                    at_placeholder, base.clip_model.text_projection, self.bank, p.attr_temperature
                )
                attr = attribute_loss(logits, vocab_idx)
            loss = total_loss(ldm, attr, alpha, p.lambda_attr)
        return StepOutput(loss=loss, ldm=ldm, attr=attr, logits=logits, vocab_idx=vocab_idx)

    def train_step(self, step: int) -> dict[str, float]:
        """One optimiser step (all micro-steps, through accelerate's ``accumulate()``, which
        scales the loss, skips the sync and the step until the last); the step's loss row."""
        # ldm sum, samples, attr sum, attr samples, correct, loss sum
        totals = torch.zeros(6, dtype=torch.float64, device=self.accelerator.device)
        for micro in range(self.p.gradient_accumulation_steps):
            with self.accelerator.accumulate(self.mapper):
                out = self.losses(step, micro)
                self.accelerator.backward(out.loss)
                self.optimizer.step()
                self.optimizer.zero_grad(set_to_none=True)
            totals += _loss_totals(out)
        totals = self.accelerator.reduce(totals, reduction="sum").tolist()
        attr_n = totals[3]
        return {
            "step": step + 1,
            "l_ldm": totals[0] / totals[1],
            "l_attr": totals[2] / attr_n if attr_n else float("nan"),
            "loss": totals[5] / totals[1],
            "attr_acc": totals[4] / attr_n if attr_n else float("nan"),
            "attr_samples": attr_n,
        }

    # -- previews ----------------------------------------------------------------------
    def preview(self, step: int, out_dir: Path) -> Path:
        """A grid: one row per emotion, sampled by the EmoGen pipeline with the current mapper
        exactly as generation samples (one seeded generator per image, the same every time)."""
        count = self.p.num_sample_images
        first = derived_seed(self.seed, 2)
        mapper = self.accelerator.unwrap_model(self.mapper)
        pipe = EmoGenPipeline(
            **base_modules(self.base, DDIMScheduler.from_config(self.base.noise_scheduler.config)),
            mapper=mapper,  # put in eval mode by the pipeline
            gaussians=self.gaussians,
            placeholder_tokens=[self.p.placeholder_token, second_placeholder(self.p.placeholder_token)],
            num_inference_steps=self.p.sample_inference_steps,
            guidance_scale=self.p.sample_guidance_scale or sampler_settings(self.base)["guidance_scale"],
        )
        pipe.set_progress_bar_config(disable=True)
        try:
            images = pipe(
                list(EMOTIONS),
                num_images_per_emotion=count,
                template=self.p.prompt_template,
                generator=[torch.Generator().manual_seed(first + i) for i in range(len(EMOTIONS) * count)],
            ).images
        finally:
            mapper.train()
        out_dir.mkdir(parents=True, exist_ok=True)
        path = out_dir / f"step_{step:06d}.png"
        make_grid(images, columns=count, cell=64).save(path)
        return path


def summarize(history: list[dict[str, float]]) -> dict[str, float]:
    """Sample-weighted means over the first and the last 10 % of the steps."""
    window = max(1, len(history) // 10)

    def mean(rows: list[dict[str, float]], key: str, weight: str | None) -> float:
        pairs = [(r[key], r[weight] if weight else 1.0) for r in rows if not math.isnan(r[key])]
        total = sum(w for _, w in pairs)
        return sum(v * w for v, w in pairs) / total if total else float("nan")

    out = {}
    for prefix, rows in (("initial_", history[:window]), ("", history[-window:])):
        out[f"{prefix}l_ldm"] = mean(rows, "l_ldm", None)
        out[f"{prefix}l_attr"] = mean(rows, "l_attr", "attr_samples")
        out[f"{prefix}loss"] = mean(rows, "loss", None)
        out[f"{prefix}attr_accuracy"] = mean(rows, "attr_acc", "attr_samples")
    out["window_steps"] = window
    return out


def write_outputs(
    trainer: Trainer, layout: Layout, history: list[dict[str, float]], samples_dir: Path, timing: dict[str, float]
) -> dict[str, float]:
    out = layout.model_dir(STAGE)
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    trainer.accelerator.unwrap_model(trainer.mapper).save_pretrained(out / "mapper")
    if samples_dir.is_dir():
        shutil.copytree(samples_dir, out / "samples")
    base_json = json.loads((trainer.inputs.base_dir / "base.json").read_text())
    p = trainer.p
    train_config = {
        "placeholder_token": p.placeholder_token,
        "prompt_template": p.prompt_template,
        "prompt": trainer.prompt,
        "mapper": layout.relative(out / "mapper"),
        "base": layout.relative(trainer.inputs.base_dir),
        "base_json": base_json,
        "gaussians": layout.relative(trainer.inputs.gaussians),
        "emotions": list(EMOTIONS),
        "vector_dim": trainer.vector_dim,
        "text_width": trainer.text_width,
        "tokenizer_max_length": trainer.base.tokenizer.model_max_length,
        "steps": len(history),
        "effective_batch_size": trainer.effective_batch,
        "num_samples": len(trainer.data),
        "seed": trainer.seed,
        "mixed_precision": p.mixed_precision,
    }
    write_json(out / "train_config.json", train_config)

    layout.metrics.mkdir(parents=True, exist_ok=True)
    with (layout.metrics / "stage2_loss.csv").open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=HISTORY_FIELDS)
        writer.writeheader()
        writer.writerows(history)
    metrics = {
        **summarize(history),
        "steps": len(history),
        "samples_seen": len(history) * trainer.effective_batch,
        "epochs": len(history) * trainer.effective_batch / len(trainer.data),
        **timing,
    }
    write_json(layout.metrics / "stage2.json", metrics)
    return metrics


def train(trainer: Trainer, layout: Layout, started: float) -> dict[str, float]:
    """The training loop, holding its run folder's lock (only the main process writes there)."""
    run_dir = trainer.work_dir / f"run-{trainer.run_key()}"
    with locked(run_dir) if trainer.accelerator.is_main_process else nullcontext():
        return _train(trainer, layout, started, run_dir)


def _train(trainer: Trainer, layout: Layout, started: float, run_dir: Path) -> dict[str, float]:
    """The training loop with resume, checkpoints, previews and logging; writes the outputs."""
    p, acc = trainer.p, trainer.accelerator
    main, steps, samples_dir = acc.is_main_process, trainer.total_steps(), run_dir / "samples"
    checkpoints = Checkpoints(run_dir, acc, prefix="checkpoint-", digits=8, keep=p.checkpoints_total_limit)
    history = _resume(checkpoints, steps)
    log.info(
        "stage2: %d steps × effective batch %d over %d samples (%.2f epochs); mapper %s, %d parameters",
        steps,
        trainer.effective_batch,
        len(trainer.data),
        steps * trainer.effective_batch / len(trainer.data),
        p.mapper.kind,
        acc.unwrap_model(trainer.mapper).num_parameters(),
    )
    start, setup_s, loop_start = len(history), time.perf_counter() - started, time.perf_counter()
    bar = tqdm(range(start, steps), initial=start, total=steps, desc="stage2", unit="step", disable=not main)
    for step in bar:
        recheck_threads()
        history.append(trainer.train_step(step))
        done, recent = step + 1, summarize_recent(history[-p.log_every :])
        if main:
            bar.set_postfix(recent)
            if done % p.log_every == 0 or done == steps:
                log_metrics(recent, step=done)
        stop = done == p.stop_after_steps and done < steps
        if stop or (p.checkpointing_steps and done % p.checkpointing_steps == 0 and done < steps):
            checkpoints.save(done, {"step": done, "history": history})
        if stop:
            raise StoppedEarly(
                f"stage2: stopped after step {done} of {steps} as stage2.stop_after_steps asks; "
                f"the checkpoint {checkpoints.latest()} is kept: run again with "
                "stop_after_steps: null to resume from it"
            )
        if main and p.sample_every and done % p.sample_every == 0 and done < steps:
            log_artifact(str(trainer.preview(done, samples_dir)), artifact_path="samples")
    timing = {"setup_s": setup_s, "train_s": time.perf_counter() - loop_start}
    return _finish(trainer, layout, history, samples_dir, timing, start, started) if main else {}


def _resume(checkpoints: Checkpoints, steps: int) -> list[dict[str, float]]:
    """The loss history so far: empty, or restored with the mapper and optimizer from the
    latest checkpoint of this run."""
    found = checkpoints.latest()
    if found is None:
        return []
    progress, _ = checkpoints.load(found)
    log.info("stage2: resuming from %s (step %d of %d)", found, progress["step"], steps)
    return progress["history"][: progress["step"]]


def _finish(
    trainer: Trainer,
    layout: Layout,
    history: list[dict[str, float]],
    samples_dir: Path,
    timing: dict[str, float],
    resumed_from_step: int,
    started: float,
) -> dict[str, float]:
    """Final preview, outputs, MLflow; then the run's checkpoints are no longer needed.
    Durations go to metrics/timings/stage2.json (and MLflow), not to the metrics."""
    grid = trainer.preview(trainer.total_steps(), samples_dir)
    log_artifact(str(grid), artifact_path="samples")
    metrics = write_outputs(trainer, layout, history, samples_dir, {"resumed_from_step": resumed_from_step})
    seconds = record(**timing, time_s=time.perf_counter() - started)["time_s"]
    log_metrics({f"final_{k}": v for k, v in metrics.items() if not math.isnan(v)})
    log_artifact(str(layout.metrics / "stage2_loss.csv"))
    log_artifact(str(layout.model_dir(STAGE) / "train_config.json"))
    shutil.rmtree(samples_dir.parent, ignore_errors=True)
    log.info(
        "stage2: L_LDM %.4f, L_attr %.4f, attribute accuracy %.3f (last %d steps); %.1f s",
        metrics["l_ldm"],
        metrics["l_attr"],
        metrics["attr_accuracy"],
        metrics["window_steps"],
        seconds,
    )
    return metrics


def summarize_recent(rows: list[dict[str, float]]) -> dict[str, float]:
    """Means of the last few steps, for the progress bar and MLflow."""
    out = {}
    for key in ("l_ldm", "l_attr", "loss", "attr_acc"):
        values = [r[key] for r in rows if not math.isnan(r[key])]
        if values:
            out[key] = round(sum(values) / len(values), 4)
    return out
