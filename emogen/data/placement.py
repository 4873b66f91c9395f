"""Where a user's EmoSet may live: never inside a DVC stage output, and no output inside it.

DVC deletes a stage's outputs before it reruns the stage, so a dataset placed in (or around)
one would be lost before any stage code could object. ``prepare_data`` runs first in the DAG
(every other stage depends on it) and its own outputs are ``persist`` (DVC leaves them
alone), so the check here runs before DVC can touch a single output.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from emogen.errors import DataError
from emogen.layout import Layout


def stage_outputs(root: Path) -> dict[Path, str]:
    """Every output of ``root/dvc.yaml`` (resolved path → stage name), as DVC reads it."""
    if not (root / "dvc.yaml").is_file():
        return {}
    from dvc.repo import Repo  # only here: DVC is a heavy import

    with Repo(str(root), uninitialized=True) as repo:  # a dvc.yaml without .dvc/ too
        return {Path(out.fs_path).resolve(): stage.name for stage in repo.index.stages for out in stage.outs}


def _within(path: Path, folder: Path) -> bool:
    return path == folder or folder in path.parents


def check_data_root(data_root: Path, layout: Layout) -> None:
    """Refuse a ``data.root`` inside any stage output, or one that holds a stage output."""
    root = data_root.resolve()
    outputs = stage_outputs(layout.root) or {layout.synthetic.resolve(): "prepare_data",
                                             layout.fingerprint.resolve(): "prepare_data"}
    where = f"move it outside every stage output, e.g. to {layout.relative(layout.user_data)}, and set data.root to that folder"
    for out, stage in sorted(outputs.items()):
        if _within(root, out):
            raise DataError(
                f"data.root {data_root} is inside {layout.relative(out)}, an output of "
                f"stage {stage} that DVC deletes before rerunning it: {where}"
            )
        if _within(out, root):
            raise DataError(
                f"data.root {data_root} holds {layout.relative(out)}, an output of stage "
                f"{stage} that would overwrite your files: {where}"
            )


OWNER_FILE = "WRITTEN_BY_PREPARE_DATA"


def clear_own_output(folder: Path) -> None:
    """Empty ``folder`` for a fresh write, refusing when it holds files prepare_data did not
    write (no OWNER_FILE): the folder is ``persist`` in dvc.yaml, so the stage clears it itself."""
    if folder.is_dir() and any(folder.iterdir()) and not (folder / OWNER_FILE).is_file():
        raise DataError(
            f"{folder} holds files prepare_data did not write (no {OWNER_FILE}); it is prepare_data's "
            "output folder and would be replaced: move them (a real EmoSet goes in data/raw/emoset, with "
            "data.source: emoset and data.root: data/raw/emoset)"
        )
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    # Written first, so an interrupted run's leftovers are still recognised as ours.
    (folder / OWNER_FILE).write_text("prepare_data's output: replaced on every run; put no files here\n")
