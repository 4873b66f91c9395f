"""Stage 1: train the emotion encoder on the manifest's emotion labels (docs/method.md "Stage 1").

Through accelerate (CPU, one GPU or ``accelerate launch`` on several; mixed precision is a
param). AdamW with a per-step warm-up + schedule, random horizontal flips, model selection
on the val split (best accuracy, ties → lower loss), epoch checkpoints with exact resume:
every epoch's data order, flips and dropout come from (seed, epoch) alone, so a resumed
run ends with the same weights as an uninterrupted one.

Several processes: each takes its share of every global batch (accelerate shards the
sampler), flips are drawn per image (not per process), gradients are averaged and only the
main process writes files and logs to MLflow. BatchNorm normalises over each process's own
batch, so N processes at batch B train the same weights as 1 process at batch B with N
gradient accumulation steps; BatchNorm's running statistics are the main process's
(docs/multi-gpu.md).
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import NamedTuple

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from accelerate import Accelerator
from torch.utils.data import DataLoader
from tqdm.auto import tqdm
from transformers import get_scheduler

from emogen.caches import locked
from emogen.checkpoints import Checkpoints
from emogen.config import Params, Stage1Params
from emogen.data.tables import SPLITS, read_table, split_rows
from emogen.devices import require_launched_processes
from emogen.errors import StoppedEarly
from emogen.layout import Layout
from emogen.seeding import seed_everything, stage_seed
from emogen.stage1.checkpoints import checkpoint_root, epoch_checkpoints, run_fingerprint
from emogen.stage1.data import EpochFlips, EpochShuffle, epoch_seed, require_cache_fits, split_dataset
from emogen.stage1.encoder import TrainResult, build_encoder, save_encoder
from emogen.stage1.evaluation import write_stage1_outputs
from emogen.threads import recheck_threads
from emogen.tracking import log_metrics, stage_run

log = logging.getLogger(__name__)

MANIFEST_COLUMNS = ("id", "split", "emotion", "emotion_idx", "image_path")
EpochCallback = Callable[[dict[str, float]], None]
_SCHEDULES = {"constant": "constant_with_warmup", "linear": "linear", "cosine": "cosine"}


def run(params: Params, layout: Layout) -> None:
    """``emogen stage stage1``: train, then write the encoder, metrics and plot data."""
    cfg = params.stage1
    manifest = read_table(layout.manifest, MANIFEST_COLUMNS)
    dataset_root = layout.dataset_root(params.data)
    accelerator = make_accelerator(cfg)
    train = partial(
        train_encoder,
        cfg,
        manifest,
        dataset_root,
        layout.model_dir("stage1"),
        stage_seed(params.seed, "stage1"),
        accelerator=accelerator,
        layout=layout,
    )
    if not accelerator.is_main_process:  # the other `accelerate launch` processes only train
        train()
        return
    with stage_run("stage1", {"seed": params.seed, "data": params.data.model_dump(), "stage1": cfg.model_dump()}):
        result = train(
            on_epoch=lambda record: log_metrics(
                {k: v for k, v in record.items() if k != "epoch"}, step=int(record["epoch"])
            )
        )
        write_stage1_outputs(result, split_rows(manifest, "test"), dataset_root, layout)


def make_accelerator(cfg: Stage1Params) -> Accelerator:
    accelerator = Accelerator(
        cpu=cfg.device == "cpu",
        mixed_precision=cfg.mixed_precision,
        gradient_accumulation_steps=cfg.gradient_accumulation_steps,
    )
    require_launched_processes(accelerator)
    return accelerator


def _optimizer(model: torch.nn.Module, cfg: Stage1Params) -> torch.optim.AdamW:
    # No weight decay on biases and norm scales (1-D tensors), as usual for ResNets.
    params = [p for p in model.parameters() if p.requires_grad]
    groups = [
        {"params": [p for p in params if p.ndim > 1], "weight_decay": cfg.weight_decay},
        {"params": [p for p in params if p.ndim <= 1], "weight_decay": 0.0},
    ]
    return torch.optim.AdamW(groups, lr=cfg.lr)


def _train_epoch(
    model: torch.nn.Module,
    loader: DataLoader,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    accelerator: Accelerator,
    cfg: Stage1Params,
    seed: int,
    epoch: int,
) -> tuple[float, float]:
    model.train()
    rank = accelerator.process_index
    torch.manual_seed(epoch_seed(seed, epoch, 0, rank))  # dropout
    loader.set_epoch(epoch)  # the order (EpochShuffle)
    if isinstance(loader.dataset, EpochFlips):  # accelerate skips the dataset's set_epoch when it shards the sampler
        loader.dataset.set_epoch(epoch)
    sums = torch.zeros(3, device=accelerator.device)  # loss·n, correct, n
    bar = tqdm(
        loader,
        desc=f"stage1 epoch {epoch + 1}/{cfg.epochs}",
        unit="batch",
        mininterval=2,
        disable=not accelerator.is_local_main_process,
        leave=False,
    )
    for pixels, labels in bar:
        recheck_threads()
        # accumulate() scales the loss and skips the gradient sync and the steps until the last micro-batch.
        with accelerator.accumulate(model):
            logits = model(pixels)
            loss = F.cross_entropy(logits.float(), labels)
            accelerator.backward(loss)
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
        n = len(labels)
        sums += torch.stack(
            [loss.detach() * n, (logits.argmax(-1) == labels).sum().float(), torch.tensor(float(n), device=sums.device)]
        )
        bar.set_postfix(loss=f"{loss.item():.3f}", refresh=False)
    loss_sum, correct, count = accelerator.reduce(sums, "sum").tolist()
    return loss_sum / count, correct / count


@torch.no_grad()
def _predict(
    model: torch.nn.Module, loader: DataLoader, accelerator: Accelerator
) -> tuple[np.ndarray, np.ndarray, float]:
    """Predicted and true labels in dataset order, and the mean cross-entropy."""
    model.eval()
    preds, labels, losses = [], [], []
    for pixels, y in loader:
        logits = model(pixels).float()
        loss = F.cross_entropy(logits, y, reduction="none")
        p, y, loss = accelerator.gather_for_metrics((logits.argmax(-1), y, loss))
        preds.append(p.cpu().numpy())
        labels.append(y.cpu().numpy())
        losses.append(loss.cpu().numpy())
    return np.concatenate(preds), np.concatenate(labels), float(np.concatenate(losses).mean())


def _is_better(record: dict[str, float], best: dict[str, float] | None) -> bool:
    if best is None:
        return True
    return (record["val_accuracy"], -record["val_loss"]) > (best["val_accuracy"], -best["val_loss"])


def _cpu_state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().cpu().clone().contiguous() for k, v in model.state_dict().items()}


@dataclass
class _Training:
    """What accelerate prepared for one run."""

    model: torch.nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    train_loader: DataLoader
    eval_loaders: dict[str, DataLoader]


def _prepare(
    cfg: Stage1Params, manifest: pd.DataFrame, dataset_root: Path, seed: int, accelerator: Accelerator
) -> _Training:
    seed_everything(seed)  # initial weights of the new layers (and of the trunk when from scratch)
    model = build_encoder(cfg)  # first: a missing pretrained model fails before any decoding
    rows = {s: split_rows(manifest, s) for s in SPLITS}
    if cfg.cache_images:
        require_cache_fits(sum(len(r) for r in rows.values()), cfg.crop)
    data = {
        s: split_dataset(rows[s], dataset_root, cfg.resize, cfg.crop, cfg.cache_images, cfg.workers, s) for s in SPLITS
    }
    train_set = EpochFlips(data["train"], seed) if cfg.hflip else data["train"]
    workers = 0 if cfg.cache_images else cfg.workers  # streaming: decode, crop and flip in worker processes
    train_loader = DataLoader(
        train_set,
        batch_size=cfg.batch_size,
        sampler=EpochShuffle(len(train_set), seed),
        drop_last=len(data["train"]) > cfg.batch_size,
        num_workers=workers,
    )
    eval_loaders = [DataLoader(data[s], batch_size=cfg.eval_batch_size, num_workers=workers) for s in SPLITS]
    optimizer = _optimizer(model, cfg)
    # Scheduler ticks: accelerate ticks num_processes times per optimizer step, and a step
    # takes gradient_accumulation_steps of this (unsharded) loader's batches per process.
    total_steps = cfg.epochs * math.ceil(len(train_loader) / cfg.gradient_accumulation_steps)
    scheduler = get_scheduler(
        _SCHEDULES[cfg.lr_schedule],
        optimizer,
        num_warmup_steps=round(cfg.warmup_fraction * total_steps),
        num_training_steps=total_steps,
    )
    model, optimizer, train_loader, scheduler, *eval_loaders = accelerator.prepare(
        model, optimizer, train_loader, scheduler, *eval_loaders
    )
    return _Training(model, optimizer, scheduler, train_loader, dict(zip(SPLITS, eval_loaders)))


class _Fit(NamedTuple):
    history: list[dict[str, float]]
    best: dict[str, float]
    best_state: dict[str, torch.Tensor]
    resumed_from: int


def _fit(
    cfg: Stage1Params,
    run: _Training,
    accelerator: Accelerator,
    checkpoints: Checkpoints,
    seed: int,
    on_epoch: EpochCallback | None,
) -> _Fit:
    """The epoch loop, from the latest checkpoint of this run when there is one."""
    history: list[dict[str, float]] = []
    best: dict[str, float] | None = None
    best_state = _cpu_state(accelerator.unwrap_model(run.model))
    latest = checkpoints.latest() if cfg.resume else None
    if latest is not None:
        progress, best_state = checkpoints.load(latest)
        history, best = progress["history"], progress["best"]
        log.info("stage1: resuming after epoch %d from %s", len(history), latest)
    resumed_from = len(history)
    for record in history if on_epoch else ():
        on_epoch(record)

    for epoch in range(resumed_from, cfg.epochs):
        train_loss, train_acc = _train_epoch(
            run.model, run.train_loader, run.optimizer, run.scheduler, accelerator, cfg, seed, epoch
        )
        val_pred, val_true, val_loss = _predict(run.model, run.eval_loaders["val"], accelerator)
        record = {
            "epoch": epoch + 1,
            "train_loss": train_loss,
            "train_accuracy": train_acc,
            "val_loss": val_loss,
            "val_accuracy": float((val_pred == val_true).mean()),
            "lr": run.scheduler.get_last_lr()[0],
        }
        history.append(record)
        log.info(
            "stage1 epoch %d/%d: train loss %.3f acc %.3f, val loss %.3f acc %.3f",
            epoch + 1,
            cfg.epochs,
            train_loss,
            train_acc,
            val_loss,
            record["val_accuracy"],
        )
        if _is_better(record, best):
            best = record
            best_state = _cpu_state(accelerator.unwrap_model(run.model))
        checkpoints.save(epoch + 1, {"history": history, "best": best}, best_state)
        if on_epoch:
            on_epoch(record)
        if epoch + 1 == cfg.stop_after_epochs and epoch + 1 < cfg.epochs:
            raise StoppedEarly(
                f"stage1: stopped after epoch {epoch + 1} of {cfg.epochs} as stage1.stop_after_epochs "
                f"asks; the checkpoint {checkpoints.latest()} is kept: run again with "
                "stop_after_epochs: null to resume from it"
            )
    return _Fit(history, best, best_state, resumed_from)


def train_encoder(
    cfg: Stage1Params,
    manifest: pd.DataFrame,
    dataset_root: Path,
    out_dir: Path,
    seed: int,
    on_epoch: EpochCallback | None = None,
    accelerator: Accelerator | None = None,
    layout: Layout = Layout(),
) -> TrainResult:
    """Train on the manifest's train split, select on val, write the best encoder to ``out_dir``.

    ``on_epoch`` gets every epoch's record (also the ones replayed from a checkpoint).
    Checkpoints go to ``layout``'s stage-1 cache; the run holds its lock throughout.
    """
    started = time.perf_counter()
    accelerator = accelerator or make_accelerator(cfg)
    run = _prepare(cfg, manifest, dataset_root, seed, accelerator)
    folder = checkpoint_root(cfg, layout) / run_fingerprint(
        cfg, seed, manifest, dataset_root, accelerator.num_processes
    )
    checkpoints = epoch_checkpoints(folder, accelerator)
    # Only the main process locks: the others follow it through the collectives.
    with locked(folder) if accelerator.is_main_process else nullcontext():
        fit = _fit(cfg, run, accelerator, checkpoints, seed, on_epoch)
        encoder = accelerator.unwrap_model(run.model)
        encoder.load_state_dict(fit.best_state)
        predictions = {s: _predict(run.model, loader, accelerator) for s, loader in run.eval_loaders.items()}
        if accelerator.is_main_process:
            save_encoder(encoder, out_dir)
        if not cfg.keep_checkpoints:
            checkpoints.remove()
    test_pred, test_true, _ = predictions["test"]
    return TrainResult(
        encoder=encoder.cpu().eval(),
        history=fit.history,
        best_epoch=int(fit.best["epoch"]),
        accuracy={s: float((p == t).mean()) for s, (p, t, _) in predictions.items()},
        test_predictions=test_pred,
        test_labels=test_true,
        resumed_from_epoch=fit.resumed_from,
        seconds=time.perf_counter() - started,
    )
