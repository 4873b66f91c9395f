"""ingest: an EmoSet folder → ``data/processed/manifest.parquet`` (+ quarantine, metrics).

Reads info.json and every split-file entry's annotation and image *header* (pixels are
decoded only with ``ingest.decode_images``), in ``ingest.workers`` processes. Unusable
entries (``emogen.data.entries.REASONS``) either stop the stage with an error naming the
file and row (``on_error: fail``) or go to ``quarantine.parquet`` with their reason
(``on_error: quarantine``). Duplicate ids keep their first entry in train, val, test order.
Labels that info.json does not list are kept here and reported by ``validate``.
"""

from __future__ import annotations

import json
import logging
import multiprocessing
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
from tqdm import tqdm

from emogen.config import Params
from emogen.data.emoset import SPLITS, Info, fingerprint, read_info, read_split
from emogen.data.entries import REASONS, Issue, check_entries
from emogen.data.schema import MANIFEST, QUARANTINE
from emogen.errors import DataError
from emogen.jsonio import write_json
from emogen.layout import Layout
from emogen.tracking import log_artifact, log_metrics, stage_run

log = logging.getLogger(__name__)

_CHUNK = 2000
_POOL_MIN_ENTRIES = 4000  # below this a worker pool costs more than it saves


def run(params: Params, layout: Layout) -> None:
    with stage_run("ingest", {"data": params.data.model_dump(), "ingest": params.ingest.model_dump()}):
        start = time.perf_counter()
        metrics = ingest(params, layout)
        seconds = round(time.perf_counter() - start, 2)
        log_metrics(
            {
                "rows": metrics["rows"],
                "quarantined": metrics["quarantined"],
                "seconds": seconds,
                **{f"quarantined_{r}": n for r, n in metrics["quarantined_by_reason"].items()},
                **{f"rows_{s}": n for s, n in metrics["per_split"].items()},
            }
        )
        log_artifact(str(layout.metrics / "ingest.json"))
    log.info("ingest: %d rows, %d quarantined in %.1f s", metrics["rows"], metrics["quarantined"], seconds)


def _check_fingerprint(layout: Layout, root: Path) -> None:
    """A real EmoSet is not tracked by DVC: refuse to ingest one that changed since prepare_data."""
    recorded_file = layout.fingerprint
    if not recorded_file.is_file():
        raise DataError(f"{recorded_file}: missing; run prepare_data first (dvc repro prepare_data)")
    recorded = json.loads(recorded_file.read_text())
    current = fingerprint(root)
    if (recorded.get("root"), recorded.get("sha256")) != (current["root"], current["sha256"]):
        raise DataError(
            f"{root} changed since prepare_data fingerprinted it ({recorded_file}); "
            "run `dvc repro -f prepare_data` so every stage sees the new data"
        )


def scan(
    root: Path, info: Info, decode: bool, workers: int, max_pixels: int
) -> tuple[list[dict[str, Any]], list[Issue], int]:
    """Check every entry of the three split files: (manifest rows, issues, entries seen)."""
    emotions = frozenset(info.emotions)
    jobs = []
    for split in SPLITS:
        entries = read_split(root, split)
        jobs += [
            (str(root), emotions, decode, max_pixels, split, i, entries[i : i + _CHUNK])
            for i in range(0, len(entries), _CHUNK)
        ]
    total = sum(len(job[-1]) for job in jobs)
    results: list[list[dict[str, Any] | Issue]] = []
    with tqdm(total=total, desc="ingest", unit="entry") as bar:
        if workers == 1 or total < _POOL_MIN_ENTRIES:
            for job in jobs:
                results.append(check_entries(job))
                bar.update(len(job[-1]))
        else:
            # forkserver: workers import only the light entries module, and forking a
            # process that holds threads (torch, tests) is avoided.
            with multiprocessing.get_context("forkserver").Pool(workers) as pool:
                for job, result in zip(jobs, pool.imap(check_entries, jobs)):
                    results.append(result)
                    bar.update(len(job[-1]))
    rows: list[dict[str, Any]] = []
    issues: list[Issue] = []
    first_seen: dict[str, tuple[str, int]] = {}
    for job, result in zip(jobs, results):
        for row_idx, item in enumerate(result, job[5]):
            if isinstance(item, Issue):
                issues.append(item)
            elif item["id"] in first_seen:
                split, row = first_seen[item["id"]]
                issues.append(
                    Issue(
                        item["split"],
                        row_idx,
                        item["id"],
                        item["image_path"],
                        item["annotation_path"],
                        "duplicate_id",
                        f"first seen at {split}.json row {row}",
                    )
                )
            else:
                first_seen[item["id"]] = (item["split"], row_idx)
                rows.append(item)
    return rows, issues, total


def _metrics(rows: list[dict[str, Any]], issues: list[Issue], total: int, info: Info) -> dict[str, Any]:
    reasons = Counter(i.reason for i in issues)
    return {
        "entries": total,
        "rows": len(rows),
        "quarantined": len(issues),
        "quarantined_by_reason": {r: reasons.get(r, 0) for r in REASONS},
        "per_split": {s: sum(r["split"] == s for r in rows) for s in SPLITS},
        "attribute_kind": dict(Counter(r["attribute_kind"] or "none" for r in rows)),
        "image_mode": dict(Counter(r["image_mode"] for r in rows)),
        "image_format": dict(Counter(r["image_format"] for r in rows)),
        # Sizes of info.json's attribute vocabularies (empty: an older download, emotions only).
        "vocabulary_sizes": {kind: len(v) for kind, v in sorted(info.vocabularies.items())},
    }


def ingest(params: Params, layout: Layout) -> dict[str, Any]:
    """Write manifest, quarantine and ``metrics/ingest.json``; returns the metrics."""
    root = layout.dataset_root(params.data)
    if params.data.source == "emoset":
        _check_fingerprint(layout, root)
    info = read_info(root)
    if not info.vocabularies:
        log.warning(
            "%s/info.json holds only the emotion map (older download): attributes are not checked against "
            "vocabularies; use the info.json of the EmoSet repository for the full check",
            root,
        )
    rows, issues, total = scan(root, info, params.ingest.decode_images, params.ingest.workers, params.ingest.max_pixels)
    if issues and params.ingest.on_error == "fail":
        counts = ", ".join(f"{r} {n}" for r, n in Counter(i.reason for i in issues).most_common())
        raise DataError(
            f"{issues[0].describe(str(root))}\n{len(issues)} of {total} entries are unusable ({counts}); "
            "fix them, or set ingest.on_error: quarantine to set them aside in data/processed/quarantine.parquet"
        )
    for issue in issues:
        log.warning("quarantined %s", issue.describe(str(root)))
    layout.processed.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.Table.from_pylist(rows, schema=MANIFEST), layout.manifest)
    pq.write_table(pa.Table.from_pylist([vars(i) for i in issues], schema=QUARANTINE), layout.quarantine)
    metrics = _metrics(rows, issues, total, info)
    layout.metrics.mkdir(parents=True, exist_ok=True)
    write_json(layout.metrics / "ingest.json", metrics)
    return metrics
