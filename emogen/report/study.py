"""The report page's "Report seeds" section, from ``metrics/study.json`` when it exists
(``emogen study seeds``, docs/study.md): the pooled paired comparisons over the report seeds,
the means over seeds, and the frontier's matched-Emo-A comparison. Without the file the
section says how to make it."""

from __future__ import annotations

from html import escape
from pathlib import Path

from emogen.jsonio import read_json

STUDY_FILE = "study.json"


def read_study(metrics: Path) -> dict | None:
    """metrics/study.json, or None when no study has been run (an unreadable file is an error naming it)."""
    path = metrics / STUDY_FILE
    return read_json(path, "write it with `emogen study seeds`") if path.is_file() else None


def _num(value: object, digits: int = 3) -> str:
    return "–" if not isinstance(value, (int, float)) else f"{value:.{digits}f}"


def _comparison_cells(row: dict) -> str:
    if row.get("difference") is None:
        return "<td class='num' colspan='4'><span class='note'>undefined (outside the baseline's curve)</span></td>"
    seeds = f"sd {_num(row.get('seed_sd'))}, [{_num(row.get('seed_low'))}, {_num(row.get('seed_high'))}]"
    per_seed = ", ".join(_num(v) for v in row.get("per_seed", []))
    return (
        f"<td class='num'>{_num(row['difference'])} <span class='ci'>[{_num(row.get('low'))}, "
        f"{_num(row.get('high'))}]</span></td><td>{escape(str(row.get('verdict')))}</td>"
        f"<td class='num'>{escape(per_seed)}</td><td class='num ci'>{escape(seeds)}</td>"
    )


def study_section(study: dict | None) -> str:
    if study is None:
        return (
            "<h2 id='study'>Report seeds</h2><p class='note'>No metrics/study.json: Table 1 above is the "
            "development seed's. Run <code>emogen study seeds</code> (docs/study.md) for the report seeds.</p>"
        )
    seeds = ", ".join(str(s) for s in study.get("report_seeds", []))
    seconds = study.get("seconds", {})
    rows = []
    for baseline, metrics in study.get("comparisons", {}).items():
        for metric, row in metrics.items():
            rows.append(
                f"<tr><td>emogen − {escape(baseline)}</td><td>{escape(metric)}</td>{_comparison_cells(row)}</tr>"
            )
    head = (
        "<tr><th>comparison</th><th>metric</th><th>pooled difference [interval]</th><th>verdict</th>"
        "<th>per seed</th><th>between seeds</th></tr>"
    )
    means = []
    for method, metrics in study.get("means", {}).items():
        cells = "".join(
            f"<td class='num'>{escape(metric)} {_num(s.get('mean'))} <span class='ci'>sd "
            f"{_num(s.get('sd'))}</span></td>"
            for metric, s in metrics.items()
            if metric in ("emo_a", "emo_a_clip", "sem_d", "sem_c", "lpips", "fid", "kid")
        )
        means.append(f"<tr><th>{escape(method)}</th>{cells}</tr>")
    frontier = study.get("frontier")
    matched = ""
    if frontier:
        mrows = [
            f"<tr><td>emogen − {escape(b)}</td><td class='num'>{escape(str(r['guidance_scale']))}</td>"
            f"{_comparison_cells(r)}</tr>"
            for b, rs in frontier.get("matched_difference", {}).items()
            for r in rs
        ]
        matched = (
            f"<h3>Frontier: Sem-D at matched Emo-A</h3><p>{escape(str(frontier.get('images_per_emotion')))} "
            "images per emotion per point; EmoGen's Sem-D minus the baseline's Sem-D interpolated at EmoGen's "
            "Emo-A, bootstrap over images per seed, pooled over seeds.</p><table id='study-frontier'>"
            "<tr><th>comparison</th><th>guidance</th><th>pooled difference [interval]</th><th>verdict</th>"
            f"<th>per seed</th><th>between seeds</th></tr>{''.join(mrows)}</table>"
        )
    return (
        f"<h2 id='study'>Report seeds</h2><p>Seeds {escape(seeds)} (never used for a choice; the development seed "
        f"{escape(str(study.get('development_seed')))} is Table 1 above). Overrides: "
        f"<code>{escape(str(study.get('overrides')))}</code>. Experiments' time: "
        f"{_num(seconds.get('experiments'), 0)} s. Intervals: {escape(str(study.get('confidence')))}; "
        f"{escape(str(study.get('pooling', '')))}.</p>"
        f"<table id='study-comparisons'>{head}{''.join(rows)}</table>"
        f"<details><summary>Means over seeds</summary><table id='study-means'>{''.join(means)}</table></details>"
        f"{matched}"
    )
