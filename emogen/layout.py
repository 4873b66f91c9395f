"""Where every stage reads and writes, relative to one root (the repo, or a test's temp dir).

``dvc.yaml`` lists the same paths as deps/outs; keep the two in step.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from emogen.config import DataParams


@dataclass(frozen=True)
class Layout:
    root: Path = Path(".")

    def _p(self, *parts: str) -> Path:
        return self.root.joinpath(*parts)

    # data
    @property
    def raw(self) -> Path:
        """The synthetic EmoSet (embedded), or only a fingerprint of the real one."""
        return self._p("data", "raw", "emoset")

    @property
    def processed(self) -> Path:
        return self._p("data", "processed")

    @property
    def manifest(self) -> Path:
        return self.processed / "manifest.parquet"

    @property
    def quarantine(self) -> Path:
        return self.processed / "quarantine.parquet"

    @property
    def balanced(self) -> Path:
        return self.processed / "balanced.parquet"

    @property
    def generated(self) -> Path:
        """Generated images: ``<method>/<emotion>/*.png`` plus ``index.json``."""
        return self._p("data", "generated")

    # models
    def model_dir(self, stage: str) -> Path:
        """Output folder of a model-producing stage (stage1, emotion_space, base, ...)."""
        return self._p("models", stage)

    # metrics
    @property
    def metrics(self) -> Path:
        return self._p("metrics")

    def dataset_root(self, data: DataParams) -> Path:
        """Folder holding the EmoSet layout that ingest and training read images from."""
        return self.raw if data.source == "synthetic" else Path(data.root)
