"""``params.yaml`` parsed once into typed, validated objects.

Every stage reads its own section plus the shared ``seed`` and ``data``. A bad file is a
:class:`ParamsError` whose message names the file, the dotted key and what is allowed.
Each section class below is owned by the stage of the same name; add knobs there and in
``params.yaml`` together.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError, model_validator

from emogen.errors import UserError

DEFAULT_PARAMS = Path("params.yaml")
# Profiles: params overlays beside params.yaml, selected by its `profile` key (docs/real-scale.md).
PROFILES_DIR = "profiles"
DEFAULT_PROFILE = "embedded"  # lays nothing over params.yaml


# `dvc exp run -S` rewrites params.yaml with YAML 1.1 booleans: an unquoted `no` reads as False.
MixedPrecision = Annotated[Literal["no", "fp16", "bf16"], BeforeValidator(lambda v: "no" if v is False else v)]


def _threads(value: Any) -> Any:
    if value == "auto" or (isinstance(value, int) and not isinstance(value, bool) and value >= 1):
        return value
    raise ValueError("must be 'auto' or a whole number of threads >= 1")


Threads = Annotated[Literal["auto"] | int, BeforeValidator(_threads)]
# Keys that were removed: a params file that still sets one gets this explanation.
REMOVED_KEYS = {
    "cpu_threads": "removed: torch's threads follow the thread policy of every emogen process; set the "
    "top-level key `threads: N` to fix them (docs/performance.md)",
}


class ParamsError(UserError, ValueError):
    """params.yaml is missing, unreadable or holds a bad key or value."""


def template_problem(template: str) -> str | None:
    """Why a prompt ``template`` is unusable, or None: it must hold exactly one ``{}`` (where the
    emotion token goes) and no other braces. Here, not in generation/, so that config imports
    nothing from the stages."""
    rest = template.replace("{}", "", 1)
    if template.count("{}") != 1 or "{" in rest or "}" in rest:
        return (
            f"template {template!r} must contain exactly one '{{}}' (where the emotion goes) and no "
            "other braces, e.g. '{} bag'"
        )
    return None


class Section(BaseModel):
    # Unknown keys are errors (a typo must not silently fall back to a default).
    model_config = ConfigDict(extra="forbid", frozen=True)


class DataParams(Section):
    source: Literal["synthetic", "emoset"] = "synthetic"
    # Folder of a real EmoSet download (info.json, train.json, image/, annotation/).
    # Unused for the synthetic source, which is rendered into data/synthetic/emoset.
    # Never inside a stage output (emogen/data/placement.py); docs/stages/data.md: data/raw/emoset.
    root: str | None = None

    @model_validator(mode="after")
    def _root_for_emoset(self) -> DataParams:
        if self.source == "emoset" and not self.root:
            raise ValueError("data.source is 'emoset', so data.root must name the EmoSet folder")
        return self


class SplitFractions(Section):
    train: float = Field(0.8, gt=0, lt=1)
    val: float = Field(0.05, gt=0, lt=1)
    test: float = Field(0.15, gt=0, lt=1)

    @model_validator(mode="after")
    def _sum_to_one(self) -> SplitFractions:
        total = self.train + self.val + self.test
        if abs(total - 1.0) > 1e-6:
            raise ValueError(f"train + val + test must be 1, got {total:g}")
        return self


class PrepareDataParams(Section):
    # Synthetic source only (the real source is checked and fingerprinted, never copied).
    num_images: int = Field(4000, ge=16)
    image_size: int = Field(32, ge=8, le=512)
    split: SplitFractions = SplitFractions()
    # Images with a plain, unlabelled background: their attribute is their first object.
    no_scene_fraction: float = Field(0.4, ge=0, le=1)
    two_objects_fraction: float = Field(0.4, ge=0, le=1)  # the rest have one object
    # Share of images whose captions also carry their own (noisy) label's emotion word, as
    # some web captions do: the base model then knows emotion words imperfectly (docs/stages/data.md).
    emotion_caption_fraction: float = Field(0.15, ge=0, le=1)
    jpeg_quality: int = Field(95, ge=1, le=100)
    workers: int = Field(2, ge=1)  # rendering processes (the files do not depend on it)


class IngestParams(Section):
    on_error: Literal["fail", "quarantine"] = "quarantine"
    # Full decode catches truncated JPEGs a header read misses; off by default for speed.
    decode_images: bool = False
    # Larger images are quarantined as too_large from their header, never decoded (a
    # decompression bomb costs nothing). At most PIL's own hard limit, so every image that
    # passes ingest also decodes in the later stages.
    max_pixels: int = Field(50_000_000, ge=1, le=178_956_970)
    workers: int = Field(2, ge=1)


class ValidateParams(Section):
    min_images_per_emotion: int = Field(20, ge=0)
    split: SplitFractions = SplitFractions()
    split_tolerance: float = Field(0.05, ge=0, le=1)


class BalanceParams(Section):
    # Splits whose images are balanced (published: every image, test included; we: train).
    splits: tuple[Literal["train", "val", "test"], ...] = Field(("train",), min_length=1)

    @model_validator(mode="after")
    def _no_repeats(self) -> BalanceParams:
        if len(set(self.splits)) != len(self.splits):
            raise ValueError(f"splits must not repeat, got {list(self.splits)}")
        return self


class ResNetArch(Section):
    """Trunk of the embedded profile, trained from scratch (ignored when ``pretrained`` is set).

    Fields are transformers' ``ResNetConfig`` ones; one entry of ``hidden_sizes``/``depths``
    per ResNet stage.
    """

    layer_type: Literal["basic", "bottleneck"] = "basic"
    embedding_size: int = Field(32, ge=1)
    hidden_sizes: tuple[int, ...] = (32, 64, 128)
    depths: tuple[int, ...] = (1, 1, 1)

    @model_validator(mode="after")
    def _one_depth_per_stage(self) -> ResNetArch:
        if not self.hidden_sizes or len(self.hidden_sizes) != len(self.depths):
            raise ValueError("hidden_sizes and depths need one entry per ResNet stage")
        if min(self.hidden_sizes) < 1 or min(self.depths) < 1:
            raise ValueError("hidden_sizes and depths must be positive")
        return self


class Stage1Params(Section):
    # Hub id or local folder of an ImageNet ResNet (sd15 profile: microsoft/resnet-50), read
    # with local_files_only; null trains the `resnet` trunk below from scratch (embedded).
    pretrained: str | None = None
    resnet: ResNetArch = ResNetArch()
    # Emotion-vector width (fc1; published 768). Stage 2's mapper maps it to the text width.
    vector_dim: int = Field(768, ge=1)
    dropout: float = Field(0.5, ge=0, lt=1)
    # Input transform (docs/method.md): resize shorter side → centre crop → [-1, 1]. sd15: 256 / 224.
    resize: int = Field(32, ge=8, le=1024)
    crop: int = Field(32, ge=8, le=1024)
    epochs: int = Field(14, ge=1)
    batch_size: int = Field(64, ge=1)
    eval_batch_size: int = Field(256, ge=1)
    lr: float = Field(3e-3, gt=0)
    weight_decay: float = Field(0.05, ge=0)
    lr_schedule: Literal["constant", "linear", "cosine"] = "cosine"
    warmup_fraction: float = Field(0.05, ge=0, lt=1)
    hflip: bool = True
    mixed_precision: MixedPrecision = "no"
    device: Literal["auto", "cpu"] = "auto"
    # Optimizer step every N batches (effective batch: batch_size × N × processes).
    gradient_accumulation_steps: int = Field(1, ge=1)
    # Decode every image once into memory (small sets; refused when it would take over half the
    # available memory); false streams them, decoded per batch in `workers` processes (EmoSet).
    cache_images: bool = True
    # Decoding threads for the cache; DataLoader worker processes when streaming.
    workers: int = Field(2, ge=0)
    # Epoch checkpoints for resuming an interrupted run (one subfolder per run fingerprint),
    # deleted after a finished run unless keep_checkpoints. null: .emogen-cache/stage1 in
    # the workspace (emogen/caches.py); a shared folder is safe (keyed and locked).
    checkpoint_dir: str | None = None
    resume: bool = True
    keep_checkpoints: bool = False
    # Stop (exit code 2) after this epoch's checkpoint, to resume later; null: run to the end.
    stop_after_epochs: int | None = Field(None, ge=1)

    @model_validator(mode="after")
    def _crop_fits(self) -> Stage1Params:
        if self.crop > self.resize:
            raise ValueError(f"crop ({self.crop}) must not exceed resize ({self.resize})")
        return self


class EmotionSpaceParams(Section):
    # diag: per-dimension std (docs/method.md); full: also the D×D covariance per emotion.
    covariance: Literal["diag", "full"] = "diag"
    # uniform: every image of the emotion counts once (docs/method.md); confidence: weighted by
    # stage 1's probability of the image's own label (docs/stages/emotion-space.md).
    weights: Literal["uniform", "confidence"] = "uniform"
    batch_size: int = Field(256, ge=1)
    workers: int = Field(2, ge=0)
    device: Literal["auto", "cpu"] = "auto"
    # Points drawn in the 2-D PCA picture (a seeded subsample when there are more).
    plot_points: int = Field(4000, ge=8)


class ConfidenceParams(Section):
    # Per-sample α below this is set to 0 (docs/method.md "Emotion confidence").
    alpha_threshold: float = Field(0.25, ge=0, le=1)
    # Attribute vocabulary: α row maximum ≥ vocab_threshold and ≥ vocab_min_count train images.
    vocab_threshold: float = Field(0.3, ge=0, le=1)
    vocab_min_count: int = Field(5, ge=1)


class EmbeddedClipParams(Section):
    """The embedded CLIP (text + image towers, trained contrastively before the UNet)."""

    text_width: int = Field(64, ge=8, le=1024)  # = the UNet's cross-attention dim
    text_layers: int = Field(2, ge=1, le=12)
    vision_width: int = Field(64, ge=8, le=1024)
    vision_layers: int = Field(2, ge=1, le=12)
    heads: int = Field(4, ge=1)
    patch_size: int = Field(4, ge=1)
    projection_dim: int = Field(64, ge=8, le=1024)
    steps: int = Field(400, ge=1)
    batch_size: int = Field(128, ge=2)
    lr: float = Field(2e-3, gt=0, le=1)

    @model_validator(mode="after")
    def _heads_divide(self) -> EmbeddedClipParams:
        for name in ("text_width", "vision_width"):
            if getattr(self, name) % self.heads:
                raise ValueError(f"{name} ({getattr(self, name)}) must be a multiple of heads ({self.heads})")
        return self


class EmbeddedUnetParams(Section):
    """The embedded pixel-space UNet2DConditionModel and its training."""

    block_channels: tuple[int, ...] = Field((32, 64, 64), min_length=2, max_length=4)
    layers_per_block: int = Field(1, ge=1, le=3)
    # Cross-attention in this many of the lowest resolutions (attention is what costs at full size).
    attention_levels: int = Field(1, ge=1)
    attention_head_dim: int = Field(8, ge=1)
    norm_groups: int = Field(8, ge=1)
    steps: int = Field(1500, ge=1)
    batch_size: int = Field(32, ge=1)
    lr: float = Field(2e-3, gt=0, le=1)
    warmup_steps: int = Field(50, ge=0)
    ema_decay: float = Field(0.999, ge=0, lt=1)
    # Classifier-free guidance: the empty prompt replaces the caption this often.
    uncond_prob: float = Field(0.1, ge=0, lt=1)
    # The full caption this often, else one of its shorter forms (down to one word).
    full_caption_prob: float = Field(0.5, ge=0, le=1)
    noise_schedule: Literal["squaredcos_cap_v2", "linear", "scaled_linear"] = "squaredcos_cap_v2"
    # Min-SNR-γ loss weighting (0 = plain ε MSE).
    snr_gamma: float = Field(5.0, ge=0)
    num_train_timesteps: int = Field(1000, ge=10)
    mixed_precision: MixedPrecision = "no"

    @model_validator(mode="after")
    def _shapes(self) -> EmbeddedUnetParams:
        if self.attention_levels > len(self.block_channels):
            raise ValueError(
                f"attention_levels ({self.attention_levels}) exceeds the number of blocks ({len(self.block_channels)})"
            )
        bad = [c for c in self.block_channels if c % self.norm_groups]
        if bad:
            raise ValueError(f"block_channels {bad} must be multiples of norm_groups ({self.norm_groups})")
        return self


class BaseSamplingParams(Section):
    """The base model's sampling settings: its evidence is sampled with them, and base.json records
    them as every generating stage's defaults (generate's scheduler, steps and guidance when null)."""

    # Any diffusers scheduler class, built from the base model's training noise schedule.
    scheduler: str = Field("DDIMScheduler", min_length=1)
    num_inference_steps: int = Field(25, ge=1, le=1000)
    guidance_scale: float = Field(3.0, ge=1)  # 1: no classifier-free guidance


class BaseModelParams(Section):
    profile: Literal["embedded", "pretrained"] = "embedded"
    # pretrained profile: hub ids (looked up in the HF cache only) or local folders.
    pretrained: str = "runwayml/stable-diffusion-v1-5"
    clip: str = "openai/clip-vit-large-patch14"
    # embedded profile (below): image side in pixels and prompt length in tokens.
    resolution: int = Field(16, ge=8, le=64)
    max_length: int = Field(16, ge=4, le=77)
    contrastive: EmbeddedClipParams = EmbeddedClipParams()
    unet: EmbeddedUnetParams = EmbeddedUnetParams()
    sampling: BaseSamplingParams = BaseSamplingParams()
    # Evidence: held-out (test split) captions generated and retrieved among each other.
    eval_captions: int = Field(64, ge=2)
    grid_rows: int = Field(8, ge=1, le=64)

    @model_validator(mode="after")
    def _resolution_fits(self) -> BaseModelParams:
        down = 2 ** (len(self.unet.block_channels) - 1)
        for name, factor in (
            ("unet.block_channels downsampling", down),
            ("contrastive.patch_size", self.contrastive.patch_size),
        ):
            if self.resolution % factor:
                raise ValueError(f"resolution ({self.resolution}) must be a multiple of {factor} ({name})")
        return self


class MapperParams(Section):
    # docs/method.md mapper; defaults = the published MLP (768 → 1024 → ReLU → 768).
    kind: Literal["mlp", "linear"] = "mlp"  # linear: a single Linear (the "FC" option)
    hidden_dim: int = Field(1024, ge=1)
    num_hidden_layers: int = Field(1, ge=1)
    layer_norm: bool = False
    dropout: float = Field(0.0, ge=0, lt=1)


class LatentsParams(Section):
    # Stage 2's training images encoded once (emogen/stages/latents.py); the values do not
    # depend on batch_size, workers or the number of processes.
    batch_size: int = Field(64, ge=1)  # images per VAE call
    workers: int = Field(2, ge=0)  # DataLoader decoding processes (0: in the main process)
    chunk_size: int = Field(4096, ge=1)  # images per .npy chunk file
    device: Literal["auto", "cpu", "cuda"] = "auto"
    # Computed and stored in this dtype (float16 halves EmoSet's ~31 GB of SD 1.5 latents).
    dtype: Literal["float32", "float16"] = "float32"


class Stage2Params(Section):
    placeholder_token: str = Field("<emotion>", min_length=1)
    # The training prompt; "{}" is where the placeholder goes (published: the placeholder alone).
    prompt_template: str = "{}"
    mapper: MapperParams = MapperParams()
    lambda_attr: float = Field(0.01, ge=0)  # weight of L_attr (published 0.01)
    attr_temperature: float = Field(1.0, gt=0)  # cosine / temperature (published 1: raw cosines)
    learning_rate: float = Field(1e-3, gt=0)
    adam_beta1: float = Field(0.9, ge=0, lt=1)
    adam_beta2: float = Field(0.999, ge=0, lt=1)
    adam_weight_decay: float = Field(1e-2, ge=0)
    adam_epsilon: float = Field(1e-8, gt=0)
    train_batch_size: int = Field(8, ge=1)  # per device (published 1)
    gradient_accumulation_steps: int = Field(1, ge=1)  # published 8: effective batch 8 either way
    # Optimiser steps; null = one epoch over balanced.parquet at the effective batch (published).
    max_train_steps: int | None = Field(None, ge=1)
    mixed_precision: MixedPrecision = "no"  # published fp16 (GPU)
    # Recompute the UNet's activations in the backward pass: less memory at SD scale, slower.
    gradient_checkpointing: bool = False
    checkpointing_steps: int = Field(200, ge=0)  # 0: never (resume needs checkpoints)
    checkpoints_total_limit: int = Field(2, ge=1)
    # Checkpoint and stop (exit code 2) after this step, to resume later; null: run to the end.
    stop_after_steps: int | None = Field(None, ge=1)
    sample_every: int = Field(200, ge=0)  # sample grid every N steps (0: only at the end)
    num_sample_images: int = Field(2, ge=1)  # per emotion in a grid
    sample_inference_steps: int = Field(25, ge=1)  # DDIM steps of the preview grids
    sample_guidance_scale: float | None = Field(None, ge=1)  # null: the base model's own
    log_every: int = Field(10, ge=1)  # MLflow loss logging interval (steps)
    # Resume checkpoints; null: .emogen-cache/stage2 in the workspace (emogen/caches.py); a
    # shared folder is safe (keyed and locked).
    work_dir: str | None = None

    @model_validator(mode="after")
    def _template_has_one_slot(self) -> Stage2Params:
        if problem := template_problem(self.prompt_template):
            raise ValueError(problem)
        if any(ch.isspace() for ch in self.placeholder_token):
            raise ValueError(f"placeholder_token must not contain spaces, got {self.placeholder_token!r}")
        return self


class GenerateParams(Section):
    # Images per emotion written to data/generated/emogen (published default: 10).
    num_images: int = Field(8, ge=1)
    batch_size: int = Field(32, ge=1)  # images per pipeline call (CFG doubles the UNet batch)
    # The prompt; "{}" is where the emotion token goes (published: the token alone).
    template: str = "{}"
    # Emotion transfer grid (grids/transfer.png): one image per emotion and template; the
    # embedded base model knows only the synthetic world's words (neutral: box, chair, street).
    transfer_templates: tuple[str, ...] = ("{} box", "{} chair", "{} street")
    # Transfer images per emotion and template (data/generated/emogen_transfer, the transfer table).
    transfer_images: int = Field(8, ge=1)
    # Sampler of every method's images; null: the base model's own (base_model.sampling, base.json).
    scheduler: str | None = Field(None, min_length=1)  # a diffusers scheduler class name
    num_inference_steps: int | None = Field(None, ge=1, le=1000)
    guidance_scale: float | None = Field(None, ge=1)  # 1: no classifier-free guidance
    resolution: int | None = Field(None, ge=8, le=2048)  # null: the base model's (published 512)
    device: Literal["auto", "cpu", "cuda"] = "auto"  # auto: cuda when available
    dtype: Literal["float32", "float16", "bfloat16"] = "float32"
    grid_columns: int = Field(8, ge=1)
    grid_cell: int = Field(64, ge=0)  # smaller images are enlarged (nearest) in the grids

    @model_validator(mode="after")
    def _templates_have_one_slot(self) -> GenerateParams:
        for template in (self.template, *self.transfer_templates):
            if problem := template_problem(template):
                raise ValueError(problem)
        return self


class EmbeddedEvaluatorParams(Section):
    """The embedded stand-in evaluators, trained on a fresh render of the synthetic world."""

    num_images: int = Field(4000, ge=16)  # training render (emotion probe and content net)
    held_out_images: int = Field(1000, ge=16)  # a second render: the reported accuracies
    probe_l2: float = Field(1e-4, ge=0)  # L2 penalty of the linear emotion probe
    probe_steps: int = Field(200, ge=1)  # L-BFGS iterations
    channels: tuple[int, ...] = Field((16, 32, 64), min_length=1, max_length=4)  # content net blocks
    epochs: int = Field(6, ge=1)
    batch_size: int = Field(64, ge=1)
    lr: float = Field(3e-3, gt=0)


class EvaluatorsParams(Section):
    # embedded: stand-ins trained here; pretrained: CLIP ViT-L/14 + probe, ResNet-50s (published).
    profile: Literal["embedded", "pretrained"] = "embedded"
    # Every image (real and generated) is resized to this side first; null: the base model's.
    resolution: int | None = Field(None, ge=8, le=1024)
    embedded: EmbeddedEvaluatorParams = EmbeddedEvaluatorParams()
    # pretrained profile: hub ids (HF cache only, never downloaded) or local folders.
    clip: str = "openai/clip-vit-large-patch14"
    object_model: str = "microsoft/resnet-50"
    # A Places365 ResNet-50: a local transformers folder, or the CSAIL file resnet50_places365.pth.tar.
    scene_model: str | None = None
    # The released Emo-A classifier (official repo: weights/Clip_emotion_classifier/
    # time_2023-11-12_03-29-best.pth, a Linear 768 → 8 on raw CLIP ViT-L/14 image features);
    # set: it is the Emo-A judge instead of a probe trained here (pretrained profile only).
    emotion_classifier: str | None = None
    probe_l2: float = Field(1e-4, ge=0)
    probe_steps: int = Field(200, ge=1)
    batch_size: int = Field(64, ge=1)
    device: Literal["auto", "cpu", "cuda"] = "auto"


class EvaluateParams(Section):
    # Rows of Table 1: folders data/generated/<method>/ (a missing one is an error).
    methods: tuple[str, ...] = Field(("emogen", "prompt", "textual_inversion", "dreambooth"), min_length=1)
    # LPIPS / Sem-D pairs per emotion (published: 10); null: every pair of the emotion's images.
    num_pairs: int | None = Field(None, ge=1)
    # true: the published metric code's defects (docs/method.md "Metrics"), for comparison only.
    published_quirks: bool = False
    bootstrap_samples: int = Field(1000, ge=10)
    confidence: float = Field(0.95, gt=0, lt=1)
    # KID's real side: a seeded subset of this many test images when there are more (its kernel
    # matrix is n²; FID always uses every real image); null: all of them.
    kid_real_images: int | None = Field(5000, ge=2)
    # The transfer table from data/generated/emogen_transfer, beside each transfer_baselines
    # folder data/generated/<method>_transfer (same templates and seeds, paired comparisons);
    # null: every method of `methods` but emogen.
    transfer: bool = True
    transfer_baselines: tuple[str, ...] | None = None
    device: Literal["auto", "cpu", "cuda"] = "auto"


class TextualInversionParams(Section):
    # diffusers' textual_inversion recipe: 5e-4 per sample scaled by the batch (--scale_lr) = 4e-3 at 8.
    learning_rate: float = Field(4e-3, gt=0)
    # The token's start: the emotion word's own embedding (TI's "initializer token") or the table mean.
    init: Literal["emotion_word", "mean"] = "emotion_word"
    token_format: str = "<{}>"  # the learned token of an emotion, {} = its name


class DreamBoothParams(Section):
    # SD's DreamBooth fine-tunes at 5e-6, 1/20 of SD's training rate; 1/20 of the embedded 2e-3.
    learning_rate: float = Field(1e-4, gt=0)
    identifier_format: str = "<v_{}>"  # one identifier per emotion, {} = its name
    # Prompt "<v_amusement> amusement" ("a [V] dog"): the emotion word is the class noun.
    prior_preservation: bool = True
    prior_loss_weight: float = Field(1.0, ge=0)
    num_class_images: int = Field(16, ge=1)  # per emotion, sampled from the base model with its word


class BaselineParams(Section):
    """Training of the Table 1 baselines; their budget (steps × batch) is stage 2's, read from
    ``stage2`` params, and their generation settings are ``generate``'s (docs/stages/baselines.md)."""

    textual_inversion: TextualInversionParams = TextualInversionParams()
    dreambooth: DreamBoothParams = DreamBoothParams()
    log_every: int = Field(10, ge=1)  # MLflow loss logging interval (steps)

    @model_validator(mode="after")
    def _formats_have_one_slot(self) -> BaselineParams:
        for key, fmt in (
            ("textual_inversion.token_format", self.textual_inversion.token_format),
            ("dreambooth.identifier_format", self.dreambooth.identifier_format),
        ):
            if fmt.count("{}") != 1 or any(ch.isspace() for ch in fmt):
                raise ValueError(f"{key} must contain '{{}}' exactly once and no spaces, got {fmt!r}")
        return self


class RegistryParams(Section):
    """The MLflow model registry and the champion gate (flows/retrain.py, ``emogen pipeline register``)."""

    model_name: str = Field("emogen", min_length=1)
    table: str = "metrics/table1.json"  # the evaluate stage's Table 1: the gate reads emogen's row
    # champion moves when the challenger's Emo-A beats the champion's by more than this ...
    min_emo_a_gain: float = Field(0.0, ge=0)
    # ... and its FID is at most (1 + fid_tolerance) × the champion's (lower FID is better).
    fid_tolerance: float = Field(0.05, ge=0)


class PipelineParams(Section):
    """Running the DVC stages with Prefect (flows/pipeline.py) and retraining on a schedule."""

    retries: int = Field(2, ge=0)  # per stage, for transient failures
    retry_delay_seconds: float = Field(10.0, ge=0)  # first back-off; doubles per retry
    cron: str = "0 3 * * 1"  # retrain deployment schedule (`emogen pipeline serve`)
    work_pool: str | None = None  # null: serve in-process; a Prefect work pool name otherwise


class FrontierParams(Section):
    # Every evaluate.methods pipeline regenerated at each scale (docs/stages/evaluation-stages.md): no
    # guidance, the embedded default, the published 7.5.
    guidance_scales: tuple[float, ...] = Field((1.0, 3.0, 7.5), min_length=2)
    num_images: int = Field(12, ge=2)  # per emotion, method and scale; same seeds everywhere
    batch_size: int = Field(32, ge=1)
    device: Literal["auto", "cpu", "cuda"] = "auto"

    @model_validator(mode="after")
    def _check(self) -> FrontierParams:
        if any(s < 1.0 for s in self.guidance_scales):
            raise ValueError(f"guidance_scales must be >= 1 (1: no guidance), got {list(self.guidance_scales)}")
        return self


class IntensityParams(Section):
    # Emotion intensities s measured (e = c + s·(x − c): 0 neutral centre, 1 the Gaussian).
    intensities: tuple[float, ...] = Field((0.0, 0.5, 1.0, 1.5), min_length=1)
    num_images: int = Field(16, ge=1)  # per emotion and intensity, same seeds at every s
    template: str = "{}"
    batch_size: int = Field(32, ge=1)
    device: Literal["auto", "cpu", "cuda"] = "auto"
    grid_cell: int = Field(64, ge=0)  # intensity_strip.png cells are enlarged to this

    @model_validator(mode="after")
    def _check(self) -> IntensityParams:
        if any(s < 0 for s in self.intensities):
            raise ValueError(f"intensities must be >= 0, got {list(self.intensities)}")
        if problem := template_problem(self.template):
            raise ValueError(problem)
        return self


class ReportParams(Section):
    # Methods shown side by side (folders under data/generated/), in this order.
    methods: tuple[str, ...] = Field(("emogen", "prompt", "textual_inversion", "dreambooth"), min_length=1)
    images_per_method: int = Field(8, ge=1)  # per emotion and method in the image rows
    image_size: int = Field(64, ge=8)  # px each image is shown at (enlarged, nearest neighbour)
    top_attributes: int = Field(3, ge=1)  # strongest attributes per emotion in the α table


class StudyParams(Section):
    """``emogen study seeds`` (flows/study.py): the report seeds, each a DVC experiment of the
    pipeline with these overrides, pooled into metrics/study.json (docs/study.md)."""

    # Report seeds: never used to choose anything (the top-level `seed` is the development seed;
    # the study refuses it — not checked here: inside a seed's experiment `seed` is that seed).
    seeds: tuple[int, ...] = Field((521, 522, 523), min_length=1)
    # dotted params key → value, set in every seed's experiment (`dvc exp run -S key=value`)
    overrides: dict[str, Any] = {"frontier.num_images": 48}
    # the stages each experiment runs (and what they depend on); [] = every stage of dvc.yaml
    targets: tuple[str, ...] = ("evaluate", "frontier")
    table: str = "metrics/table1.json"  # read from each experiment: comparisons + methods
    frontier: str = "metrics/frontier.json"  # read from each experiment: at_matched_emo_a
    output: str = "metrics/study.json"
    confidence: float = Field(0.95, gt=0, lt=1)  # of the pooled intervals

    @model_validator(mode="after")
    def _check(self) -> StudyParams:
        if len(set(self.seeds)) != len(self.seeds):
            raise ValueError(f"seeds must be distinct, got {list(self.seeds)}")
        if "seed" in self.overrides:
            raise ValueError("overrides must not set seed (each report seed sets it)")
        return self


class Params(Section):
    # profiles/<profile>.yaml is laid over this file (its keys win): embedded (changes nothing) | sd15.
    profile: str = Field(DEFAULT_PROFILE, pattern=r"^[A-Za-z0-9_-]+$")
    seed: int = Field(520, ge=0)
    # torch CPU threads per process: auto (the thread policy: every core alone, an equal share
    # when several emogen processes compute at once) or a fixed number (docs/performance.md).
    threads: Threads = "auto"
    data: DataParams = DataParams()
    prepare_data: PrepareDataParams = PrepareDataParams()
    ingest: IngestParams = IngestParams()
    validate_: ValidateParams = Field(ValidateParams(), alias="validate")
    balance: BalanceParams = BalanceParams()
    stage1: Stage1Params = Stage1Params()
    emotion_space: EmotionSpaceParams = EmotionSpaceParams()
    confidence: ConfidenceParams = ConfidenceParams()
    base_model: BaseModelParams = BaseModelParams()
    latents: LatentsParams = LatentsParams()
    stage2: Stage2Params = Stage2Params()
    generate: GenerateParams = GenerateParams()
    evaluators: EvaluatorsParams = EvaluatorsParams()
    evaluate: EvaluateParams = EvaluateParams()
    baseline: BaselineParams = BaselineParams()
    registry: RegistryParams = RegistryParams()
    pipeline: PipelineParams = PipelineParams()
    intensity: IntensityParams = IntensityParams()
    frontier: FrontierParams = FrontierParams()
    report: ReportParams = ReportParams()
    study: StudyParams = StudyParams()

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


def _describe(error: dict[str, Any], source: str) -> str:
    key = ".".join(str(part) for part in error["loc"]) or "(top level)"
    if error["type"] == "extra_forbidden":
        return f"{source}: {key}: unknown key"
    return f"{source}: {key}: {error['msg']} (got {error.get('input')!r})"


def parse_params(raw: dict[str, Any], source: str = "params") -> Params:
    """Validate a params mapping; errors name ``source`` and each bad key."""
    removed = [
        f"{source}: {section}.{key}: {why}"
        for section, values in raw.items()
        if isinstance(values, dict)
        for key, why in REMOVED_KEYS.items()
        if key in values
    ]
    if removed:
        raise ParamsError("invalid parameters:\n" + "\n".join(removed))
    try:
        return Params.model_validate(raw)
    except ValidationError as exc:
        lines = [_describe(err, source) for err in exc.errors()]
        unknown = [err for err in exc.errors() if err["type"] == "extra_forbidden"]
        for err in unknown:
            section = _section_model(err["loc"][:-1])
            if section is not None:
                allowed = ", ".join(sorted(f.alias or n for n, f in section.model_fields.items()))
                lines.append(f"  allowed keys under {'.'.join(map(str, err['loc'][:-1])) or 'top level'}: {allowed}")
        raise ParamsError("invalid parameters:\n" + "\n".join(lines)) from None


def _section_model(loc: tuple) -> type[BaseModel] | None:
    model: type[BaseModel] = Params
    for part in loc:
        field = next((f for n, f in model.model_fields.items() if part in (n, f.alias)), None)
        if field is None or not (isinstance(field.annotation, type) and issubclass(field.annotation, BaseModel)):
            return None
        model = field.annotation
    return model


def parse_yaml(text: str, source: str) -> Any:
    """YAML as DVC reads and writes params files: YAML 1.2 (ruamel), where an unquoted ``no``
    is a string — `dvc exp run -S` rewrites params.yaml without quotes, and a YAML 1.1
    reader would turn ``mixed_precision: no`` into False."""
    from ruamel.yaml import YAML, YAMLError

    try:
        return YAML(typ="safe", pure=True).load(text)
    except YAMLError as exc:
        raise ParamsError(f"{source}: not valid YAML: {exc}") from None


def read_params_yaml(path: Path) -> Any:
    return parse_yaml(Path(path).read_text(), str(path)) or {}


def profile_path(params_file: Path, name: str) -> Path:
    return Path(params_file).parent / PROFILES_DIR / f"{name}.yaml"


def _read_mapping(path: Path, what: str) -> dict[str, Any]:
    if not path.is_file():
        raise ParamsError(f"{path}: no such {what}")
    raw = read_params_yaml(path)
    if not isinstance(raw, dict):
        raise ParamsError(f"{path}: expected a mapping of sections, got {type(raw).__name__}")
    return raw


def lay_over(base: dict[str, Any], overlay: dict[str, Any]) -> dict[str, Any]:
    """``base`` with ``overlay``'s keys replacing its own, section by section (a new dict)."""
    merged = dict(base)
    for key, value in overlay.items():
        below = base.get(key)
        merged[key] = lay_over(below if isinstance(below, dict) else {}, value) if isinstance(value, dict) else value
    return merged


def profile_keys(overlay: dict[str, Any], prefix: str = "") -> list[str]:
    """Dotted keys a profile sets (its leaves; an empty section sets nothing)."""
    keys = []
    for key, value in overlay.items():
        dotted = f"{prefix}{key}"
        keys += profile_keys(value, dotted + ".") if isinstance(value, dict) else [dotted]
    return keys


def load_raw_params(path: str | Path = DEFAULT_PARAMS) -> tuple[dict[str, Any], dict[str, Any], Path]:
    """→ (params.yaml, its profile's overlay, the overlay's path), both read and checked for shape.
    The profile is never written back: params.yaml stays exactly as its user left it."""
    path = Path(path)
    raw = _read_mapping(path, "params file (run from the repository root)")
    name = raw.get("profile", DEFAULT_PROFILE)
    parse_params({"profile": name}, str(path))  # a bad name is an error naming the key
    overlay_path = profile_path(path, name)
    if name == DEFAULT_PROFILE and not overlay_path.is_file():
        return raw, {}, overlay_path  # e.g. a params.yaml copied without profiles/
    if not overlay_path.is_file():
        known = sorted(p.stem for p in overlay_path.parent.glob("*.yaml"))
        raise ParamsError(
            f"{path}: profile: {name!r}: there is no {overlay_path} (profiles: {', '.join(known) or 'none'})"
        )
    overlay = _read_mapping(overlay_path, "profile")
    for key in ("profile", "seed"):
        if key in overlay:
            raise ParamsError(f"{overlay_path}: {key}: set it in {path}, not in a profile")
    return raw, overlay, overlay_path


def load_params(path: str | Path = DEFAULT_PARAMS) -> Params:
    """Read and validate ``path`` (default ``params.yaml`` in the working directory) with its
    profile (``profiles/<profile>.yaml`` beside it) laid over it: the profile's keys win."""
    raw, overlay, overlay_path = load_raw_params(path)
    return parse_params(lay_over(raw, overlay), f"{path} + {overlay_path}")
