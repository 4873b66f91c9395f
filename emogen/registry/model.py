"""The trained generator as an MLflow pyfunc model: request rows in, PNG images out.

Artifacts mirror the repo layout the ``generate`` stage builds the pipeline from, so loading
is that stage's own :func:`~emogen.stages.generate.build_pipeline`::

    models/base/            the embedded base model (weights) — or, for SD 1.5, base.json
                            alone: a pinned reference (hub ids + revisions, HF-cache paths)
    models/stage2/          mapper/ + train_config.json (the placeholder token)
    models/emotion_space/gaussians.safetensors
    generate.json           the generate params (scheduler, steps, guidance, resolution)

Input rows: ``emotion`` (required), ``num_images`` (default 1), ``seed`` (default 0; image
n of a row uses seed + n), ``template`` (default "{}"), ``mode`` (single | interpolate |
tokens), ``emotion_2`` (fusion partner), ``weight`` (interpolation weight of emotion_2).
Output: one row per image with ``emotion``, ``seed``, ``template``, ``mode`` and ``image``
(base64 PNG).
"""

from __future__ import annotations

import base64
import io
import json
import shutil
import tempfile
from importlib.metadata import version
from pathlib import Path
from typing import Any

import mlflow
import pandas as pd
from mlflow.exceptions import MlflowException
from mlflow.models import ModelSignature
from mlflow.types import ColSpec, Schema

import emogen
from emogen.config import GenerateParams
from emogen.errors import UserError
from emogen.layout import Layout
from emogen.limits import MIN_IMAGES, SERVED_MAX_IMAGES
from emogen.pipelines.components import BASE_JSON, read_base_json

ARTIFACT = "generator"  # the pyfunc artifact key (a folder in the repo layout)
GENERATE_JSON = "generate.json"
MODES = ("single", "interpolate", "tokens")
# Pinned from the running environment: the served model needs exactly what it was trained with.
REQUIREMENTS = (
    "torch",
    "diffusers",
    "transformers",
    "tokenizers",
    "accelerate",
    "safetensors",
    "mlflow",
    "pandas",
    "numpy",
    "pillow",
    "pydantic",
    "pyyaml",
    "tqdm",
)

SIGNATURE = ModelSignature(
    inputs=Schema(
        [
            ColSpec("string", "emotion"),
            ColSpec("long", "num_images", required=False),
            ColSpec("long", "seed", required=False),
            ColSpec("string", "template", required=False),
            ColSpec("string", "mode", required=False),
            ColSpec("string", "emotion_2", required=False),
            ColSpec("double", "weight", required=False),
        ]
    ),
    outputs=Schema(
        [
            ColSpec("string", "emotion"),
            ColSpec("long", "seed"),
            ColSpec("string", "template"),
            ColSpec("string", "mode"),
            ColSpec("string", "image"),
        ]
    ),
)


def pip_requirements() -> list[str]:
    return [f"{name}=={version(name).split('+')[0]}" for name in REQUIREMENTS]


def stage_artifacts(layout: Layout, generate: GenerateParams, folder: Path) -> Path:
    """Copy what the generator needs from ``layout`` into ``folder`` (repo layout); → folder."""
    base_dir = layout.model_dir("base")
    info = read_base_json(base_dir)
    sources = {
        "models/stage2/mapper": layout.model_dir("stage2") / "mapper",
        "models/stage2/train_config.json": layout.model_dir("stage2") / "train_config.json",
        "models/emotion_space/gaussians.safetensors": layout.model_dir("emotion_space") / "gaussians.safetensors",
        # SD 1.5: a reference to the HF cache, never gigabytes of copies.
        "models/base": base_dir if info["profile"] == "embedded" else base_dir / BASE_JSON,
    }
    for target, source in sources.items():
        if not source.exists():
            raise UserError(f"{source}: missing; run the pipeline (`dvc repro generate`) before registering")
        destination = folder / target
        if source.is_dir():
            shutil.copytree(source, destination)
        else:
            if target == "models/base":
                destination = destination / BASE_JSON
            destination.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, destination)
    (folder / GENERATE_JSON).write_text(generate.model_dump_json(indent=1))
    return folder


def load_generator(folder: str | Path, device: str = "auto"):
    """The EmoGen pipeline from a folder written by :func:`stage_artifacts`."""
    from emogen.pipelines.settings import build_pipeline

    folder = Path(folder)
    generate = GenerateParams.model_validate_json((folder / GENERATE_JSON).read_text())
    generate = generate.model_copy(update={"device": device})
    pipe = build_pipeline(
        folder / "models/base",
        folder / "models/stage2",
        folder / "models/emotion_space/gaussians.safetensors",
        generate,
    )
    pipe.set_progress_bar_config(disable=True)
    return pipe


def is_generator_folder(folder: Path) -> bool:
    return (folder / GENERATE_JSON).is_file()


def _value(row: dict[str, Any], key: str, default: Any) -> Any:
    value = row.get(key)
    return default if value is None or (isinstance(value, float) and value != value) else value


def _bad(where: str, field: str, value: Any, allowed: str) -> UserError:
    return UserError(f"{where}: {field} {value!r} is not allowed; allowed: {allowed}")


def _integer(row: dict[str, Any], key: str, default: int, where: str, allowed: str) -> int:
    value = _value(row, key, default)
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise _bad(where, key, value, allowed)
    try:
        number = int(value) if not isinstance(value, float) or value.is_integer() else None
    except ValueError:
        number = None
    if number is None:
        raise _bad(where, key, value, allowed)
    return number


def request_jobs(rows: pd.DataFrame) -> list:
    """Input rows → ImageJobs, each row checked: a bad value is a UserError naming the row,
    the field, its value and what is allowed (the served model answers it as HTTP 400)."""
    from emogen.config import template_problem
    from emogen.emotions import EMOTIONS
    from emogen.pipelines.jobs import ImageJob

    if "emotion" not in rows.columns:
        raise UserError(f"request: an 'emotion' column is required, got columns {list(rows.columns)}")
    emotions = ", ".join(EMOTIONS)
    count_range = f"an integer in {MIN_IMAGES}..{SERVED_MAX_IMAGES}"
    jobs = []
    for number, row in enumerate(rows.to_dict("records")):
        where = f"request row {number}"
        mode = _value(row, "mode", "single")
        if mode not in MODES:
            raise _bad(where, "mode", mode, ", ".join(MODES))
        for key in ("emotion", "emotion_2"):
            value = _value(row, key, None)
            if (key == "emotion" or value is not None) and value not in EMOTIONS:
                raise _bad(where, key, value, emotions)
        emotion_2 = _value(row, "emotion_2", None)
        if mode != "single" and emotion_2 is None:
            raise _bad(where, "emotion_2", None, f"one of {emotions} (mode {mode!r} fuses two emotions)")
        if mode == "single" and emotion_2 is not None:
            raise _bad(where, "mode", mode, "interpolate or tokens when emotion_2 is given")
        template = _value(row, "template", "{}")
        if not isinstance(template, str) or template_problem(template):
            raise _bad(where, "template", template, "a prompt with exactly one {} and no other braces, e.g. '{} bag'")
        count = _integer(row, "num_images", 1, where, count_range)
        if not MIN_IMAGES <= count <= SERVED_MAX_IMAGES:
            raise _bad(where, "num_images", count, count_range)
        seed = _integer(row, "seed", 0, where, "an integer >= 0")
        if seed < 0:
            raise _bad(where, "seed", seed, "an integer >= 0")
        weight = _value(row, "weight", None)
        if weight is not None and (
            isinstance(weight, bool) or not isinstance(weight, (int, float)) or not 0.0 <= weight <= 1.0
        ):
            raise _bad(where, "weight", weight, "a number in [0, 1] (the interpolation weight of emotion_2)")
        fusion = None if mode == "single" else mode
        jobs += [
            ImageJob(
                row["emotion"], seed + n, template, "", emotion_2, fusion, None if weight is None else float(weight)
            )
            for n in range(count)
        ]
    return jobs


def invalid_request(exc: UserError) -> MlflowException:
    """A bad request as MLflow's invalid-parameter error: the scoring server answers HTTP 400
    with this message at the top level of its JSON (never a stack trace)."""
    return MlflowException.invalid_parameter_value(str(exc))


def png_base64(image) -> str:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return base64.b64encode(buffer.getvalue()).decode("ascii")


class EmoGenModel(mlflow.pyfunc.PythonModel):
    """pyfunc wrapper of :class:`~emogen.pipelines.emogen_pipeline.EmoGenPipeline`."""

    def load_context(self, context) -> None:
        from emogen.threads import apply_thread_policy

        # A served model waits for requests: it counts as sharing the cores only while it generates.
        apply_thread_policy(register_process=False)
        self.pipe = load_generator(context.artifacts[ARTIFACT])

    def predict(self, context, model_input: pd.DataFrame, params: dict[str, Any] | None = None) -> pd.DataFrame:
        from emogen.pipelines.jobs import run_jobs
        from emogen.threads import busy

        try:
            jobs = request_jobs(pd.DataFrame(model_input))
            for template in {job.template for job in jobs}:
                self.pipe.check_words(template)
        except UserError as exc:
            raise invalid_request(exc) from None
        with busy():
            records = [
                {
                    "emotion": record.emotion,
                    "seed": record.seed,
                    "template": record.template,
                    "mode": record.mode,
                    "image": png_base64(image),
                }
                for record, image in run_jobs(self.pipe, jobs, batch_size=8, desc="serving")
            ]
        return pd.DataFrame(records, columns=["emotion", "seed", "template", "mode", "image"])


def log_generator(layout: Layout, generate: GenerateParams, model_name: str) -> mlflow.models.model.ModelInfo:
    """Log the generator to the active run and register it as a new version of ``model_name``."""
    with tempfile.TemporaryDirectory(prefix="emogen-generator-") as tmp:
        folder = stage_artifacts(layout, generate, Path(tmp) / ARTIFACT)
        return mlflow.pyfunc.log_model(
            name="generator",
            python_model=EmoGenModel(),
            artifacts={ARTIFACT: str(folder)},
            code_paths=[str(Path(emogen.__file__).parent)],
            pip_requirements=pip_requirements(),
            signature=SIGNATURE,
            registered_model_name=model_name,
            metadata={"generate": json.loads(generate.model_dump_json())},
        )
