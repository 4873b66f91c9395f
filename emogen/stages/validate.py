"""validate: the manifest's data contract, a Great Expectations suite defined in code.

Checks (each an expectation; the derived tables let plain column expectations express
per-group rules):
- ``manifest``: emotions are the 8 EmoSet ones; ids unique and present; split in
  train/val/test; brightness and colorfulness in [0, 1]; scene, facial expression and
  human action within info.json's vocabularies (when info.json has them: older downloads
  hold only the emotion map, and then these checks are skipped with a warning).
- ``objects`` (one row per image × object): objects within info.json's vocabulary.
- ``train_counts`` (one row per emotion): at least ``min_images_per_emotion`` train images.
- ``split_fractions`` (one row per split): |fraction − expected| ≤ ``split_tolerance``.

Writes ``metrics/validation/`` (``result.json``: the full GX results; ``docs/``: the Data
Docs site, open ``docs/index.html``) and ``metrics/validate.json`` (a timestamp-free
summary that downstream stages depend on). A failure raises DataError listing each failed
expectation with counts and example ids, so ``dvc repro`` stops before anything trains.
"""

from __future__ import annotations

import json
import logging
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

# GX logs its import-time internals at INFO: keep them out of the stage log.
logging.getLogger("great_expectations").setLevel(logging.WARNING)
import great_expectations as gx  # noqa: E402
import great_expectations.expectations as gxe  # noqa: E402
from great_expectations.data_context.types.base import ProgressBarsConfig  # noqa: E402

from emogen.config import Params  # noqa: E402
from emogen.data.emoset import SPLITS, read_info  # noqa: E402
from emogen.emotions import EMOTIONS  # noqa: E402
from emogen.errors import DataError  # noqa: E402
from emogen.jsonio import write_json  # noqa: E402
from emogen.layout import Layout  # noqa: E402
from emogen.tracking import log_artifact, log_artifacts, log_metrics, stage_run  # noqa: E402

log = logging.getLogger(__name__)

SUMMARY_FILE = "validate.json"
# Optional manifest columns checked against the info.json vocabulary of the same name.
_VOCAB_COLUMNS = ("scene", "facial_expression", "human_action")
_EXAMPLES = 5


def run_suites(tables: dict[str, Table], docs_dir: Path) -> list[Any]:
    """Run every table's suite in an ephemeral GX context; build Data Docs into ``docs_dir``."""
    context = gx.get_context(mode="ephemeral")
    context.variables.progress_bars = ProgressBarsConfig(globally=False)
    context.add_data_docs_site(
        "emogen",
        {
            "class_name": "SiteBuilder",
            "store_backend": {"class_name": "TupleFilesystemStoreBackend", "base_directory": str(docs_dir.resolve())},
            "site_index_builder": {"class_name": "DefaultSiteIndexBuilder"},
        },
    )
    source = context.data_sources.add_pandas("emoset")
    results = []
    for name, table in tables.items():
        batch = source.add_dataframe_asset(name).add_batch_definition_whole_dataframe(name)
        suite = context.suites.add(gx.ExpectationSuite(name=name))
        for expectation in table.expectations:
            suite.add_expectation(expectation)
        definition = context.validation_definitions.add(gx.ValidationDefinition(name=name, data=batch, suite=suite))
        results.append(
            definition.run(
                batch_parameters={"dataframe": table.frame},
                result_format={
                    "result_format": "SUMMARY",
                    "unexpected_index_column_names": [table.key],
                    "partial_unexpected_count": _EXAMPLES,
                },
            )
        )
    context.build_data_docs(site_names=["emogen"])
    return results


def run(params: Params, layout: Layout) -> None:
    with stage_run("validate", {"data": params.data.model_dump(), "validate": params.validate_.model_dump()}):
        try:
            summary = validate(params, layout)
        finally:
            # The report is logged whether the data passed or not: a failure is what it is for.
            out = validation_dir(layout)
            if (layout.metrics / SUMMARY_FILE).is_file():
                report = json.loads((layout.metrics / SUMMARY_FILE).read_text())
                log_metrics(
                    {"evaluated": report["evaluated"], "failed": report["failed"], "success": int(report["success"])}
                )
                log_artifact(str(layout.metrics / SUMMARY_FILE))
                log_artifact(str(out / "result.json"))
                log_artifacts(str(out / "docs"), "data_docs")
    log.info("validate: %d expectations passed", summary["evaluated"])


@dataclass
class Table:
    """One dataframe and the expectations (GX expectation objects) that run on it."""

    frame: pd.DataFrame
    key: str  # the column whose values identify failing rows in the summary
    expectations: list[Any] = field(default_factory=list)


def validation_dir(layout: Layout) -> Path:
    return layout.metrics / "validation"


def build_tables(manifest: pd.DataFrame, vocabularies: dict[str, frozenset[str]], params: Params) -> dict[str, Table]:
    """The tables and their expectations (no GX context involved yet)."""
    v = params.validate_
    man = Table(
        manifest,
        "id",
        [
            gxe.ExpectColumnValuesToBeInSet(column="emotion", value_set=list(EMOTIONS)),
            gxe.ExpectColumnValuesToNotBeNull(column="id"),
            gxe.ExpectColumnValuesToBeUnique(column="id"),
            gxe.ExpectColumnValuesToBeInSet(column="split", value_set=list(SPLITS)),
            gxe.ExpectColumnValuesToBeBetween(column="brightness", min_value=0.0, max_value=1.0),
            gxe.ExpectColumnValuesToBeBetween(column="colorfulness", min_value=0.0, max_value=1.0),
        ],
    )
    for column in _VOCAB_COLUMNS:
        if column in vocabularies:
            man.expectations.append(
                gxe.ExpectColumnValuesToBeInSet(column=column, value_set=sorted(vocabularies[column]))
            )
    tables = {"manifest": man}

    if "object" in vocabularies:
        objects = manifest[["id", "objects"]].explode("objects").dropna().rename(columns={"objects": "object"})
        tables["objects"] = Table(
            objects.reset_index(drop=True),
            "id",
            [
                gxe.ExpectColumnValuesToBeInSet(column="object", value_set=sorted(vocabularies["object"])),
            ],
        )

    train = manifest.loc[manifest["split"] == "train", "emotion"].value_counts()
    counts = pd.DataFrame({"emotion": list(EMOTIONS), "train_images": [int(train.get(e, 0)) for e in EMOTIONS]})
    tables["train_counts"] = Table(
        counts,
        "emotion",
        [
            gxe.ExpectColumnValuesToBeBetween(column="train_images", min_value=v.min_images_per_emotion),
        ],
    )

    expected = v.split.model_dump()
    actual = manifest["split"].value_counts(normalize=True)
    fractions = pd.DataFrame({"split": list(SPLITS)})
    fractions["fraction"] = [float(actual.get(s, 0.0)) for s in SPLITS]
    fractions["expected"] = [expected[s] for s in SPLITS]
    fractions["deviation"] = (fractions["fraction"] - fractions["expected"]).abs().round(6)
    tables["split_fractions"] = Table(
        fractions,
        "split",
        [
            gxe.ExpectColumnValuesToBeBetween(column="deviation", min_value=0.0, max_value=v.split_tolerance),
        ],
    )
    return tables


def summarize(results: list[Any], tables: dict[str, Table]) -> tuple[dict[str, Any], list[str]]:
    """(timestamp-free summary for metrics/validate.json, one line per failed expectation)."""
    checks: dict[str, Any] = {}
    failures = []
    for (name, table), suite_result in zip(tables.items(), results):
        for r in suite_result.results:
            column = r.expectation_config.kwargs.get("column")
            label = f"{name}.{column}.{r.expectation_config.type.removeprefix('expect_column_values_to_')}"
            unexpected = int(r.result.get("unexpected_count") or 0)
            checks[label] = {
                "success": bool(r.success),
                "unexpected": unexpected,
                "rows": int(r.result.get("element_count") or 0),
            }
            if not r.success:
                examples = [str(i.get(table.key)) for i in r.result.get("partial_unexpected_index_list") or []]
                values = [str(x) for x in r.result.get("partial_unexpected_list") or []]
                failures.append(
                    f"{label}: {unexpected} of {checks[label]['rows']} rows fail "
                    f"(e.g. {table.key} {', '.join(examples)}; values {', '.join(values)})"
                    + (
                        f" [{r.exception_info.get('exception_message')}]"
                        if r.exception_info.get("raised_exception")
                        else ""
                    )
                )
    summary = {"success": not failures, "evaluated": len(checks), "failed": len(failures), "checks": checks}
    return summary, failures


def validate(params: Params, layout: Layout) -> dict[str, Any]:
    """Run the suite; write the results, Data Docs and summary; raise DataError on failure."""
    (layout.metrics / SUMMARY_FILE).unlink(missing_ok=True)
    info = read_info(layout.dataset_root(params.data))
    if not info.vocabularies:
        log.warning("info.json has no attribute vocabularies (older download): scene/object labels are not checked")
    manifest = pd.read_parquet(layout.manifest)
    tables = build_tables(manifest, info.vocabularies, params)
    out = validation_dir(layout)
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    results = run_suites(tables, out / "docs")
    write_json(
        out / "result.json",
        {"success": all(r.success for r in results), "suites": [r.to_json_dict() for r in results]},
        default=str,
    )
    summary, failures = summarize(results, tables)
    write_json(layout.metrics / SUMMARY_FILE, summary)
    if failures:
        raise DataError(
            f"validate: {len(failures)} of {summary['evaluated']} expectations failed on {layout.manifest}:\n  "
            + "\n  ".join(failures)
            + f"\nreport: {out / 'docs' / 'index.html'}"
        )
    return summary
