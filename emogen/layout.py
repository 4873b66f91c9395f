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

    def relative(self, path: Path) -> str:
        """``path`` relative to the root (the repo under DVC) when inside it, else absolute:
        what outputs record, so they do not depend on where the repo is checked out."""
        path, root = Path(path).resolve(), self.root.resolve()
        return path.relative_to(root).as_posix() if path.is_relative_to(root) else str(path)

    # data
    @property
    def synthetic(self) -> Path:
        """The rendered synthetic EmoSet (prepare_data's output; empty for a real EmoSet)."""
        return self._p("data", "synthetic", "emoset")

    @property
    def fingerprint(self) -> Path:
        """Which dataset the pipeline reads (prepare_data's output): a real EmoSet's fingerprint."""
        return self._p("data", "fingerprint.json")

    @property
    def user_data(self) -> Path:
        """Where docs/stages/data.md tells users to put a real EmoSet: no stage writes under ``data/raw``."""
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
    def latents(self) -> Path:
        """Stage 2's training images encoded once (the latents stage's output)."""
        return self.processed / "latents"

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
        return self.synthetic if data.source == "synthetic" else Path(data.root)
