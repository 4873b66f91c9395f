"""The ``report`` stage: ``metrics/report.html``, one self-contained page (images embedded as
data URIs, opens offline) with Table 1, every method's images per emotion, the transfer and
intensity results, the emotion space and α table, training curves, the data validation
summary, and the commit and params it came from. Logged to MLflow."""

from __future__ import annotations

import logging
from pathlib import Path

import yaml
from tqdm.auto import tqdm

from emogen.config import Params
from emogen.layout import Layout
from emogen.report.html import render_page
from emogen.report.inputs import read_inputs
from emogen.tracking import git_commit, log_artifact, log_metrics, stage_run

log = logging.getLogger(__name__)

REPORT_FILE = "report.html"


def run(params: Params, layout: Layout) -> None:
    with stage_run("report", {"report": params.report.model_dump()}):
        out = write_report(params, layout)
        log_artifact(str(out))
        log_metrics({"report_bytes": out.stat().st_size})
    log.info("report: %s (%.1f MB)", out, out.stat().st_size / 1e6)


def write_report(params: Params, layout: Layout) -> Path:
    cfg = params.report
    with tqdm(total=2, desc="report", unit="step") as bar:
        inputs = read_inputs(layout, cfg.methods, cfg.images_per_method, cfg.top_attributes)
        bar.update()
        # The params as parsed (defaults filled in), so the page shows every value used.
        params_yaml = yaml.safe_dump(params.model_dump(mode="json", by_alias=True), sort_keys=False)
        page = render_page(inputs, list(cfg.methods), cfg.image_size, git_commit(), params_yaml)
        bar.update()
    out = layout.metrics / REPORT_FILE
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(page, encoding="utf-8")
    return out
