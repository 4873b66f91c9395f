"""A tiny random Stable-Diffusion-shaped model, written as real diffusers/transformers folders.

Reusable test helper (no download): ``build_tiny_sd(root)`` writes
``root/pipeline`` (model_index.json, tokenizer/, text_encoder/, unet/, scheduler/, and vae/
unless ``with_vae=False``, i.e. pixel space), ``root/clip`` (a CLIPModel whose text tower
*is* the pipeline's text encoder, as SD 1.5's is CLIP ViT-L/14's, + its tokenizer).
``write_base_json`` then writes the ``models/base/base.json`` contract (profile
"pretrained", absolute paths) and ``write_stage2_inputs`` the other files stage 2 reads.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path

import torch

# Whole words in the tiny BPE vocabulary (each also byte-tokenizable): prompt parts of tests.
WORDS = ("a", "photo", "of", "bag", "cup", "room", "street", "red", "cat", "dog", "tree", "sea")


@dataclass(frozen=True)
class TinySD:
    root: Path
    pipeline: Path
    clip: Path
    resolution: int
    text_width: int


def _bytes_to_unicode() -> dict[int, str]:
    # GPT-2/CLIP byte ↔ printable-character table (the BPE alphabet).
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, map(chr, cs)))


def write_tokenizer_files(folder: Path, max_length: int = 16, words: tuple[str, ...] = WORDS):
    """A real CLIPTokenizer over a byte alphabet + ``words``; returns it (saved in ``folder``)."""
    from transformers import CLIPTokenizer

    alphabet = list(_bytes_to_unicode().values())
    vocab_list = alphabet + [c + "</w>" for c in alphabet]
    merges: list[str] = []
    for word in words:
        # Merge left to right: "c a", "ca t</w>" ... so each word is one token.
        pieces = list(word[:-1]) + [word[-1] + "</w>"]
        while len(pieces) > 1:
            merges.append(f"{pieces[0]} {pieces[1]}")
            merged = pieces[0] + pieces[1]
            if merged not in vocab_list:
                vocab_list.append(merged)
            pieces = [merged] + pieces[2:]
    vocab_list += ["<|startoftext|>", "<|endoftext|>"]
    vocab = {tok: i for i, tok in enumerate(dict.fromkeys(vocab_list))}
    merges = list(dict.fromkeys(merges))
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "vocab.json").write_text(json.dumps(vocab))
    (folder / "merges.txt").write_text("#version: 0.2\n" + "\n".join(merges) + "\n")
    tokenizer = CLIPTokenizer(
        vocab=str(folder / "vocab.json"), merges=str(folder / "merges.txt"), model_max_length=max_length
    )
    tokenizer.save_pretrained(folder)
    return tokenizer


def build_tiny_sd(
    root: str | Path, *, with_vae: bool = True, resolution: int = 16, seed: int = 0, words: tuple[str, ...] = WORDS
) -> TinySD:
    """Write the tiny model folders under ``root`` (seeded: same seed, same weights); ``words``
    are single tokens of its tokenizer."""
    from diffusers import AutoencoderKL, DDPMScheduler, UNet2DConditionModel
    from transformers import CLIPConfig, CLIPModel, CLIPTextConfig, CLIPTextModel

    root = Path(root)
    pipeline, clip = root / "pipeline", root / "clip"
    torch.manual_seed(seed)
    tokenizer = write_tokenizer_files(pipeline / "tokenizer", words=words)
    width = 32
    text_config = CLIPTextConfig(
        vocab_size=len(tokenizer),
        hidden_size=width,
        intermediate_size=64,
        num_attention_heads=4,
        num_hidden_layers=2,
        max_position_embeddings=tokenizer.model_max_length,
        projection_dim=16,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    text_encoder = CLIPTextModel(text_config)
    text_encoder.save_pretrained(pipeline / "text_encoder")

    latent_channels = 4 if with_vae else 3
    unet = UNet2DConditionModel(
        sample_size=resolution // 2 if with_vae else resolution,
        in_channels=latent_channels,
        out_channels=latent_channels,
        block_out_channels=(8, 16),
        layers_per_block=1,
        norm_num_groups=4,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        cross_attention_dim=width,
        attention_head_dim=2,
    )
    unet.save_pretrained(pipeline / "unet")
    # SD 1.5's schedule settings (diffusers' SD pipeline rewrites others); pixel space clips x0 to [-1, 1].
    DDPMScheduler(
        num_train_timesteps=1000,
        beta_schedule="scaled_linear",
        beta_start=0.00085,
        beta_end=0.012,
        steps_offset=1,
        clip_sample=not with_vae,
    ).save_pretrained(pipeline / "scheduler")
    index = {
        "_class_name": "StableDiffusionPipeline" if with_vae else "DiffusionPipeline",
        "_diffusers_version": "0.42.1",
        "tokenizer": ["transformers", "CLIPTokenizer"],
        "text_encoder": ["transformers", "CLIPTextModel"],
        "unet": ["diffusers", "UNet2DConditionModel"],
        "scheduler": ["diffusers", "DDPMScheduler"],
    }
    if with_vae:
        AutoencoderKL(
            in_channels=3,
            out_channels=3,
            latent_channels=4,
            block_out_channels=(8, 8),
            down_block_types=("DownEncoderBlock2D",) * 2,
            up_block_types=("UpDecoderBlock2D",) * 2,
            layers_per_block=1,
            norm_num_groups=4,
            sample_size=resolution,
        ).save_pretrained(pipeline / "vae")
        index["vae"] = ["diffusers", "AutoencoderKL"]
        index.update(safety_checker=[None, None], feature_extractor=[None, None], requires_safety_checker=False)
    (pipeline / "model_index.json").write_text(json.dumps(index, indent=2))

    from transformers import CLIPVisionConfig

    vision_config = CLIPVisionConfig(
        hidden_size=16,
        intermediate_size=32,
        num_attention_heads=2,
        num_hidden_layers=1,
        image_size=resolution,
        patch_size=8,
        projection_dim=16,
    )
    clip_model = CLIPModel(
        CLIPConfig(text_config=text_config.to_dict(), vision_config=vision_config.to_dict(), projection_dim=16)
    )
    clip_model.text_model.load_state_dict(text_encoder.state_dict())
    clip_model.save_pretrained(clip)
    tokenizer.save_pretrained(clip)

    return TinySD(root, pipeline, clip, resolution, width)


def write_base_json(sd: TinySD, base_dir: str | Path) -> Path:
    """``base_dir/base.json`` (profile "pretrained") for ``sd``, its folders resolved the way
    the real profile resolves SD 1.5 / CLIP (:func:`emogen.pipelines.resolve.resolve_model`)."""
    from emogen.config import BaseSamplingParams
    from emogen.pipelines.resolve import CLIP_FILES, PIPELINE_FILES, resolve_model

    pipeline = resolve_model(str(sd.pipeline), PIPELINE_FILES, "base_model.pipeline")
    clip = resolve_model(str(sd.clip), CLIP_FILES, "base_model.clip")
    base_dir = Path(base_dir)
    base_dir.mkdir(parents=True, exist_ok=True)
    path = base_dir / "base.json"
    path.write_text(
        json.dumps(
            {
                "profile": "pretrained",
                "pipeline": str(pipeline.path.resolve()),
                "clip": str(clip.path.resolve()),
                "resolution": sd.resolution,
                "sampling": BaseSamplingParams().model_dump(),
                "sources": {"pipeline": pipeline.revision, "clip": clip.revision},
            },
            indent=2,
        )
    )
    return path


def write_clip_image_processor(clip: str | Path, size: int) -> None:
    """The image processor a CLIP checkpoint ships (the evaluators' CLIP reads images with it)."""
    from transformers import CLIPImageProcessor

    CLIPImageProcessor(size={"shortest_edge": size}, crop_size={"height": size, "width": size}).save_pretrained(clip)


def write_tiny_classifier(folder: str | Path, labels: list[str]) -> None:
    """A tiny random ResNetForImageClassification + image processor: the ResNet-50 classifiers' shape."""
    from transformers import ConvNextImageProcessor, ResNetConfig, ResNetForImageClassification

    config = ResNetConfig(
        num_channels=3,
        embedding_size=8,
        hidden_sizes=[8, 16],
        depths=[1, 1],
        layer_type="basic",
        num_labels=len(labels),
        id2label=dict(enumerate(labels)),
        label2id={n: i for i, n in enumerate(labels)},
    )
    ResNetForImageClassification(config).save_pretrained(folder)
    ConvNextImageProcessor(size={"shortest_edge": 16}, crop_pct=1.0).save_pretrained(folder)


def write_tiny_resnet_trunk(folder: str | Path) -> None:
    """A tiny random ResNetModel with ResNet-50's bottleneck blocks (stage 1's pretrained trunk)."""
    from transformers import ResNetConfig, ResNetModel

    torch.manual_seed(0)
    ResNetModel(
        ResNetConfig(num_channels=3, embedding_size=8, hidden_sizes=[16, 32], depths=[1, 1], layer_type="bottleneck")
    ).save_pretrained(folder)


STAGE2_VOCABULARY = ("cat", "dog", "tree", "sea")


def write_stage2_inputs(
    root: str | Path,
    *,
    num_images: int = 16,
    vector_dim: int = 8,
    image_size: int = 20,
    seed: int = 0,
    latents: bool = True,
) -> None:
    """Everything stage 2 reads besides the base model, under the repo-like ``root``
    (the files the stages exchange): images in the synthetic dataset root, balanced.parquet,
    models/confidence (sample_alpha.parquet, vocabulary.json) and models/emotion_space
    (vectors.safetensors, vector_ids.parquet, gaussians.safetensors). Random but seeded.
    ``latents``: also data/processed/latents, encoded by the base model in root/models/base
    (call :func:`write_base_json` first)."""
    import numpy as np
    import pandas as pd
    from PIL import Image
    from safetensors.torch import save_file

    from emogen.emotions import EMOTIONS
    from emogen.layout import Layout

    root = Path(root)
    rng = np.random.default_rng(seed)
    dataset = Layout(root).synthetic
    rows = []
    for i in range(num_images):
        emotion_idx = i % len(EMOTIONS)
        emotion = EMOTIONS[emotion_idx]
        rel = f"image/{emotion}/{emotion}_{i}.png"
        (dataset / rel).parent.mkdir(parents=True, exist_ok=True)
        pixels = rng.integers(0, 256, (image_size, image_size, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(dataset / rel)
        rows.append(
            {
                "id": f"{emotion}_{i}",
                "emotion": emotion,
                "emotion_idx": emotion_idx,
                "image_path": rel,
                "attribute": STAGE2_VOCABULARY[i % 5] if i % 5 < 4 else "rock",
                "attribute_kind": "object",
            }
        )
    balanced = pd.DataFrame(rows + rows[: num_images // 2])  # oversampled: repeats, like balance
    processed = root / "data" / "processed"
    processed.mkdir(parents=True, exist_ok=True)
    balanced.to_parquet(processed / "balanced.parquet", index=False)

    confidence = root / "models" / "confidence"
    confidence.mkdir(parents=True, exist_ok=True)
    (confidence / "vocabulary.json").write_text(
        json.dumps({"attributes": list(STAGE2_VOCABULARY), "emotions": ["amusement", "awe", "fear", "sadness"]})
    )
    vocab_idx = [STAGE2_VOCABULARY.index(a) if a in STAGE2_VOCABULARY else -1 for a in balanced["attribute"]]
    pd.DataFrame(
        {
            "id": balanced["id"],
            "emotion_idx": balanced["emotion_idx"],
            "attribute": balanced["attribute"],
            "alpha": [0.6 if v >= 0 else 0.0 for v in vocab_idx],
            "vocab_idx": vocab_idx,
        }
    ).to_parquet(confidence / "sample_alpha.parquet", index=False)

    space = root / "models" / "emotion_space"
    space.mkdir(parents=True, exist_ok=True)
    ids = [r["id"] for r in rows][::-1]  # a different order than balanced: the join must use ids
    vectors = torch.from_numpy(rng.normal(size=(len(ids), vector_dim)).astype("float32"))
    save_file({"vectors": vectors}, str(space / "vectors.safetensors"))
    pd.DataFrame({"id": ids}).to_parquet(space / "vector_ids.parquet", index=False)
    save_file(
        {"mean": torch.randn(len(EMOTIONS), vector_dim), "std": torch.rand(len(EMOTIONS), vector_dim)},
        str(space / "gaussians.safetensors"),
    )
    if latents:
        write_latents(root)


def write_latents(root: str | Path, **latents_params) -> None:
    """data/processed/latents of ``root`` (the latents stage's code, one process, no MLflow run)."""
    from emogen.config import parse_params
    from emogen.devices import resolve_device
    from emogen.layout import Layout
    from emogen.pipelines.components import load_base
    from emogen.stages import latents

    params = parse_params({"latents": {"workers": 0, **latents_params}})
    layout = Layout(Path(root))
    images = latents.unique_images(layout.balanced)
    base = load_base(
        layout.model_dir("base"),
        device=resolve_device(params.latents.device),
        dtype=latents.DTYPES[params.latents.dtype],
    )
    shutil.rmtree(layout.latents, ignore_errors=True)
    layout.latents.mkdir(parents=True)
    latents.encode_shard(
        base,
        images,
        layout.dataset_root(params.data),
        layout.latents,
        params.latents,
        latents.stage_seed(params.seed, latents.STAGE),
    )
    latents.finish(params, layout, base, images)
