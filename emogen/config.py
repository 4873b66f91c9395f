"""``params.yaml`` parsed once into typed, validated objects.

Every stage reads its own section plus the shared ``seed`` and ``data``. A bad file is a
:class:`ParamsError` whose message names the file, the dotted key and what is allowed.
Each section class below is owned by the stage of the same name; add knobs there and in
``params.yaml`` together.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from emogen.errors import UserError

DEFAULT_PARAMS = Path("params.yaml")


class ParamsError(UserError, ValueError):
    """params.yaml is missing, unreadable or holds a bad key or value."""


class Section(BaseModel):
    # Unknown keys are errors (a typo must not silently fall back to a default).
    model_config = ConfigDict(extra="forbid", frozen=True)


class DataParams(Section):
    source: Literal["synthetic", "emoset"] = "synthetic"
    # Folder of a real EmoSet download (info.json, train.json, image/, annotation/).
    # Unused for the synthetic source, which is rendered into data/raw/emoset.
    root: str | None = None

    @model_validator(mode="after")
    def _root_for_emoset(self) -> "DataParams":
        if self.source == "emoset" and not self.root:
            raise ValueError("data.source is 'emoset', so data.root must name the EmoSet folder")
        return self


class SplitFractions(Section):
    train: float = Field(0.8, gt=0, lt=1)
    val: float = Field(0.05, gt=0, lt=1)
    test: float = Field(0.15, gt=0, lt=1)

    @model_validator(mode="after")
    def _sum_to_one(self) -> "SplitFractions":
        total = self.train + self.val + self.test
        if abs(total - 1.0) > 1e-6:
            raise ValueError(f"train + val + test must be 1, got {total:g}")
        return self


class PrepareDataParams(Section):
    num_images: int = Field(4000, ge=16)
    image_size: int = Field(32, ge=8, le=512)
    split: SplitFractions = SplitFractions()


class IngestParams(Section):
    on_error: Literal["fail", "quarantine"] = "quarantine"
    # Full decode catches truncated JPEGs a header read misses; off by default for speed.
    decode_images: bool = False
    workers: int = Field(2, ge=1)


class ValidateParams(Section):
    min_images_per_emotion: int = Field(20, ge=0)
    split: SplitFractions = SplitFractions()
    split_tolerance: float = Field(0.05, ge=0, le=1)


class BalanceParams(Section):
    pass


class Stage1Params(Section):
    pass


class EmotionSpaceParams(Section):
    pass


class ConfidenceParams(Section):
    pass


class BaseModelParams(Section):
    pass


class Stage2Params(Section):
    pass


class GenerateParams(Section):
    pass


class Params(Section):
    seed: int = Field(520, ge=0)
    data: DataParams = DataParams()
    prepare_data: PrepareDataParams = PrepareDataParams()
    ingest: IngestParams = IngestParams()
    validate_: ValidateParams = Field(ValidateParams(), alias="validate")
    balance: BalanceParams = BalanceParams()
    stage1: Stage1Params = Stage1Params()
    emotion_space: EmotionSpaceParams = EmotionSpaceParams()
    confidence: ConfidenceParams = ConfidenceParams()
    base_model: BaseModelParams = BaseModelParams()
    stage2: Stage2Params = Stage2Params()
    generate: GenerateParams = GenerateParams()

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


def _describe(error: dict[str, Any], source: str) -> str:
    key = ".".join(str(part) for part in error["loc"]) or "(top level)"
    if error["type"] == "extra_forbidden":
        return f"{source}: {key}: unknown key"
    return f"{source}: {key}: {error['msg']} (got {error.get('input')!r})"


def parse_params(raw: dict[str, Any], source: str = "params") -> Params:
    """Validate a params mapping; errors name ``source`` and each bad key."""
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


def load_params(path: str | Path = DEFAULT_PARAMS) -> Params:
    """Read and validate ``path`` (default ``params.yaml`` in the working directory)."""
    path = Path(path)
    if not path.is_file():
        raise ParamsError(f"{path}: no such params file (run from the repository root)")
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise ParamsError(f"{path}: not valid YAML: {exc}") from None
    if not isinstance(raw, dict):
        raise ParamsError(f"{path}: expected a mapping of sections, got {type(raw).__name__}")
    return parse_params(raw, str(path))
