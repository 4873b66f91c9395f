"""The report page: one self-contained HTML file (images as data URIs, no scripts, no links
out but the Data Docs page beside it), laid out from :class:`ReportInputs`."""

from __future__ import annotations

import base64
import io
from html import escape

from emogen.emotions import EMOTIONS
from emogen.report.inputs import CURVES, ReportInputs
from emogen.report.study import study_section

# Table 1 columns: metric key → (header, ↑/↓, digits).
TABLE1_COLUMNS: dict[str, tuple[str, str, int]] = {
    "fid": ("FID (point estimate)", "↓", 2),
    "kid": ("KID", "↓", 4),
    "lpips": ("LPIPS", "↑", 3),
    "emo_a": ("Emo-A (independent judge)", "↑", 3),
    "emo_a_clip": ("Emo-A (CLIP probe: shares the generators' CLIP)", "↑", 3),
    "emo_a_target_prob": ("Emo-A target prob.", "↑", 3),
    "emo_a_polarity": ("Emo-A polarity", "↑", 3),
    "sem_c": ("Sem-C", "↑", 3),
    "sem_d": ("Sem-D", "↑", 4),
    "sem_d_cosine": ("Sem-D (1 − cos)", "↑", 3),
}

STYLE = """
body { font-family: system-ui, sans-serif; margin: 1.5em auto; max-width: 80em; color: #222; }
h1 { margin-bottom: 0.2em; } h2 { border-bottom: 1px solid #ccc; margin-top: 1.8em; }
table { border-collapse: collapse; margin: 0.6em 0; }
th, td { border: 1px solid #ccc; padding: 0.25em 0.5em; text-align: left; vertical-align: top; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
.ci { color: #777; font-size: 0.85em; }
.note { color: #a33; font-size: 0.85em; }
.standin { background: #fff3cd; padding: 0.4em 0.7em; border: 1px solid #e0c36c; }
img.gen { image-rendering: pixelated; margin: 1px; }
.imgrow { white-space: nowrap; }
pre { background: #f6f6f6; padding: 0.8em; overflow-x: auto; font-size: 0.85em; }
.charts { display: flex; flex-wrap: wrap; gap: 1em; }
.ok { color: #176b2c; } .fail { color: #a33; font-weight: bold; }
"""


def data_uri(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def img(png: bytes, alt: str, size: int | None = None, cls: str = "") -> str:
    dims = f' width="{size}" height="{size}"' if size else ""
    klass = f' class="{cls}"' if cls else ""
    return f'<img{klass} src="{data_uri(png)}" alt="{escape(alt)}"{dims}>'


def interval_cell(entry: object, digits: int) -> str:
    """A metric ``{"value", "low", "high"}`` as "v [low, high]"; null values show their note."""
    if not isinstance(entry, dict) or entry.get("value") is None:
        note = entry.get("note", "not computed") if isinstance(entry, dict) else "missing"
        return f'<td class="num"><span class="note">{escape(str(note))}</span></td>'
    text = f"{entry['value']:.{digits}f}"
    if entry.get("low") is not None and entry.get("high") is not None:
        text += f' <span class="ci">[{entry["low"]:.{digits}f}, {entry["high"]:.{digits}f}]</span>'
    return f'<td class="num">{text}</td>'


def comparison_words(metric: str, c: dict, reference: str, other: str) -> str:
    """A paired difference worded exactly as its interval allows."""
    header, _, digits = TABLE1_COLUMNS.get(metric, (metric, "", 3))
    numbers = f"{c['difference']:+.{digits}f} <span class='ci'>[{c['low']:+.{digits}f}, {c['high']:+.{digits}f}]</span>"
    if c["verdict"] == "no difference detected":
        return f"{escape(header)}: no difference detected between {escape(reference)} and {escape(other)} ({numbers})"
    return f"{escape(header)}: {escape(reference)} {escape(c['verdict'])} than {escape(other)} ({numbers})"


def comparisons_section(t: dict) -> str:
    """``comparisons`` of table1.json: reference minus each baseline, paired over shared seeds."""
    comparisons = t.get("comparisons")
    if not comparisons:
        return ""
    reference = str(t.get("comparisons_reference", "emogen"))
    metrics = [k for k in TABLE1_COLUMNS if any(k in row for row in comparisons.values())]
    head = "".join(f"<th>{escape(TABLE1_COLUMNS[k][0])}</th>" for k in metrics)
    rows = []
    for other, row in comparisons.items():
        cells = []
        for k in metrics:
            c = row.get(k)
            if c is None:
                cells.append("<td></td>")
                continue
            digits = TABLE1_COLUMNS[k][2]
            cells.append(
                f"<td class='num'>{c['difference']:+.{digits}f} <span class='ci'>[{c['low']:+.{digits}f}, "
                f"{c['high']:+.{digits}f}]</span><br><b>{escape(c['verdict'])}</b></td>"
            )
        rows.append(f"<tr><th>{escape(reference)} − {escape(other)}</th>{''.join(cells)}</tr>")
    claims = "".join(
        f"<li>{comparison_words(k, c, reference, other)}</li>"
        for other, row in comparisons.items()
        for k in ("emo_a", "sem_d", "kid", "lpips")
        if k in row
        for c in (row[k],)
    )
    return (
        f"<h3 id='comparisons'>Paired comparisons</h3><p>{escape(reference)} minus each baseline, bootstrapped "
        "over the shared seeds (the same image indices for both methods in every resample). A verdict says "
        "“higher” or “lower” only where the 95 % interval of the difference excludes 0, else “no difference "
        "detected”; for FID/KID lower is better, the words are about the difference itself.</p>"
        f"<table id='comparisons-table'><tr><th>difference</th>{head}</tr>{''.join(rows)}</table>"
        f"<ul id='comparison-claims'>{claims}</ul>"
    )


def table1_section(inputs: ReportInputs, methods: list[str]) -> str:
    t = inputs.table1
    head = "".join(f"<th>{escape(h)} {arrow}</th>" for h, arrow, _ in TABLE1_COLUMNS.values())
    rows = []
    for method in methods:
        values = t["methods"][method]
        cells = "".join(interval_cell(values.get(key), digits) for key, (_, _, digits) in TABLE1_COLUMNS.items())
        rows.append(f"<tr><th>{escape(method)}</th>{cells}</tr>")
    evaluators = "".join(f"<li><b>{escape(k)}</b>: {escape(str(v))}</li>" for k, v in t["evaluators"].items())
    standin = ""
    if t.get("stand_in"):
        standin = (
            f'<p class="standin">Profile <b>{escape(str(t.get("profile")))}</b>: the evaluators are '
            "stand-ins trained on the synthetic world, not the published models; the numbers compare "
            "methods with each other, not with the paper's.</p>"
        )
    boot = t.get("bootstrap", {})
    unit = boot.get("unit", "images")
    headline = ""
    if "emo_a_clip" in t.get("evaluators", {}):
        headline = (
            "<p id='headline'>The headline Emo-A is the <b>independent judge</b>: a classifier trained from "
            "scratch that shares no weight, training or code with any generator. The CLIP-probe column is "
            "the published-style judge; its CLIP's text tower is every method's text encoder and the space "
            "stage 2's attribute loss trains in, so it may favour what the generators learned to please.</p>"
        )
    return (
        f"<h2 id='table1'>Table 1</h2>{standin}{headline}"
        f"<p>{escape(str(t.get('images_per_emotion', '?')))} images per emotion; {escape(str(boot.get('confidence', '?')))} "
        f"intervals over {escape(str(boot.get('samples', '?')))} bootstrap resamples of the {escape(str(unit))}.</p>"
        f"<table id='table1-table'><tr><th>method</th>{head}</tr>{''.join(rows)}</table>"
        f"{comparisons_section(t)}"
        f"<p>Evaluators:</p><ul>{evaluators}</ul>"
        f"{per_emotion_table(inputs)}"
    )


def per_emotion_table(inputs: ReportInputs) -> str:
    rows = inputs.per_emotion
    if not rows:
        return ""
    columns = list(rows[0])
    head = "".join(f"<th>{escape(c)}</th>" for c in columns)
    body = "".join(
        "<tr>" + "".join(f'<td class="num">{escape(_short(row[c]))}</td>' for c in columns) + "</tr>" for row in rows
    )
    return f"<details><summary>Per emotion (metrics/table1_per_emotion.csv)</summary><table>{'<tr>' + head + '</tr>'}{body}</table></details>"


def _short(value: str) -> str:
    try:
        return f"{float(value):.4g}"
    except ValueError:
        return value


def images_section(inputs: ReportInputs, size: int) -> str:
    head = "".join(f"<th>{escape(m.method)}</th>" for m in inputs.methods)
    rows = []
    for emotion in EMOTIONS:
        cells = "".join(
            '<td class="imgrow">'
            + "".join(img(png, f"{m.method} {emotion}", size, "gen") for png in m.by_emotion[emotion])
            + "</td>"
            for m in inputs.methods
        )
        rows.append(f"<tr><th>{emotion}</th>{cells}</tr>")
    return (
        f"<h2 id='images'>Images per emotion</h2><p>Every method's first images of each emotion "
        f"(same seeds across methods where the method allows), enlarged to {size} px.</p>"
        f"<table id='images-table'><tr><th>emotion</th>{head}</tr>{''.join(rows)}</table>"
    )


def transfer_section(inputs: ReportInputs, size: int) -> str:
    rows_json = inputs.transfer["templates"]
    reference = str(inputs.transfer.get("reference", "emogen"))
    metrics = ("emo_a", "object_kept")
    head = (
        "<th>method</th>"
        + "".join(f"<th>{k}</th>" for k in metrics)
        + "".join(f"<th>{escape(reference)} − method: {k}</th>" for k in metrics)
    )
    body = []
    for t, row in rows_json.items():
        per_method = row.get("methods") or {reference: {k: row.get(k) for k in metrics}}
        for method, cells in per_method.items():
            comparison = (row.get("comparisons") or {}).get(method)
            diffs = "".join(
                f"<td class='num'>{comparison[k]['difference']:+.3f} <span class='ci'>[{comparison[k]['low']:+.3f}, "
                f"{comparison[k]['high']:+.3f}]</span> {escape(comparison[k]['verdict'])}</td>"
                if comparison
                else "<td></td>"
                for k in metrics
            )
            body.append(
                f"<tr><th>{escape(t)}</th><td>{escape(method)}</td>"
                + "".join(interval_cell(cells.get(k), 3) for k in metrics)
                + diffs
                + "</tr>"
            )
    body = "".join(body)
    evaluators = "; ".join(f"{escape(k)}: {escape(str(v))}" for k, v in inputs.transfer.get("evaluators", {}).items())
    grid_head = "".join(f"<th>{escape(t)}</th>" for t in inputs.transfer_templates)
    grid = "".join(
        f"<tr><th>{emotion}</th>"
        + "".join(
            f"<td>{img(inputs.transfer_images[emotion, t], f'{emotion} {t}', size, 'gen')}</td>"
            if (emotion, t) in inputs.transfer_images
            else "<td></td>"
            for t in inputs.transfer_templates
        )
        + "</tr>"
        for emotion in EMOTIONS
    )
    return (
        f"<h2 id='transfer'>Emotion transfer</h2><p>The emotion token with a neutral word (each baseline: its "
        f"own emotion prompt in the same template, e.g. “amusement box”, same seeds); object_kept: does the "
        f"object classifier still find the word; differences paired over the shared seeds. "
        f"Evaluators: {evaluators or 'not stated'}.</p>"
        f"<table id='transfer-table'><tr><th>template</th>{head}</tr>{body}</table>"
        f"<table id='transfer-grid'><tr><th>emotion</th>{grid_head}</tr>{grid}</table>"
    )


def intensity_section(inputs: ReportInputs) -> str:
    info = inputs.intensity
    rows = "".join(
        f"<tr><td class='num'>{p['intensity']:g}</td>{interval_cell(p.get('mean_target_prob'), 3)}"
        f"{interval_cell(p.get('top1'), 3)}</tr>"
        for p in info["points"]
    )
    label = escape(str(info.get("evaluator", "emotion probe")))
    if info.get("stand_in"):
        label += " (stand-in)"
    return (
        f"<h2 id='intensity'>Emotion intensity</h2><p>Rule: {escape(str(info.get('rule', '')))}. "
        f"{escape(str(info.get('images_per_emotion', '?')))} images per emotion and intensity, the same seeds at "
        f"every intensity, scored by {label}; chance {info.get('chance', 0.125):.3f}. "
        f"The mean target probability rises at every step: <b>{'yes' if info.get('rises') else 'no'}</b>.</p>"
        f"<table id='intensity-table'><tr><th>s</th><th>mean target probability</th><th>top-1</th></tr>{rows}</table>"
        f"<p>Rows: emotions; columns: intensities (one seed).</p>{img(inputs.intensity_strip, 'intensity strip')}"
    )


def space_section(inputs: ReportInputs) -> str:
    rows = "".join(
        f"<tr><th>{emotion}</th><td>"
        + ", ".join(
            f"{escape(a)} <span class='ci'>({escape(kind)}, α {alpha:.2f}, {count} images)</span>"
            for a, kind, alpha, count in inputs.alpha_top[emotion]
        )
        + "</td></tr>"
        for emotion in EMOTIONS
    )
    return (
        f"<h2 id='space'>Emotion space and confidence α</h2>{img(inputs.emotion_space_png, 'emotion space PCA')}"
        f"<p>Strongest attributes per emotion (highest α, models/confidence/alpha.parquet):</p>"
        f"<table id='alpha-table'><tr><th>emotion</th><th>attributes</th></tr>{rows}</table>"
    )


def curve_png(rows: list[dict[str, str]], x: str, ys: tuple[str, ...], title: str) -> bytes:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(ys), figsize=(3.2 * len(ys), 2.4), squeeze=False)
    xs = [float(r[x]) for r in rows]
    for ax, y in zip(axes[0], ys, strict=True):
        ax.plot(xs, [float(r[y]) for r in rows], lw=1)
        ax.set_title(y, fontsize=9)
        ax.set_xlabel(x, fontsize=8)
        ax.tick_params(labelsize=7)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90)
    plt.close(fig)
    return buf.getvalue()


def curves_section(inputs: ReportInputs) -> str:
    charts = "".join(
        f"<div>{img(curve_png(inputs.curves[file], x, ys, title), title)}</div>"
        for file, (x, ys, title) in CURVES.items()
    )
    return f"<h2 id='curves'>Training curves</h2><div class='charts'>{charts}</div>"


def validation_section(inputs: ReportInputs) -> str:
    v = inputs.validation
    rows = "".join(
        f"<tr><td>{escape(name)}</td><td class='{'ok' if c.get('success') else 'fail'}'>"
        f"{'pass' if c.get('success') else 'FAIL'}</td><td class='num'>{c.get('unexpected', '')}</td>"
        f"<td class='num'>{c.get('rows', '')}</td></tr>"
        for name, c in v["checks"].items()
    )
    status = "passed" if v.get("success") else "FAILED"
    return (
        f"<h2 id='validation'>Data validation</h2><p>Great Expectations suite {status}: "
        f"{v.get('evaluated', '?')} expectations, {v.get('failed', '?')} failed. "
        f"<a href='validation/docs/index.html'>Data Docs page</a> (metrics/validation/docs/index.html).</p>"
        f"<table id='validation-table'><tr><th>check</th><th>result</th><th>unexpected</th><th>rows</th></tr>{rows}</table>"
    )


def render_page(inputs: ReportInputs, methods: list[str], image_size: int, commit: str, params_yaml: str) -> str:
    sections = [
        table1_section(inputs, methods),
        study_section(inputs.study),
        images_section(inputs, image_size),
        transfer_section(inputs, image_size),
        intensity_section(inputs),
        space_section(inputs),
        curves_section(inputs),
        validation_section(inputs),
        f"<h2 id='provenance'>Provenance</h2><p>git commit <code id='commit'>{escape(commit)}</code></p>"
        f"<details><summary>params.yaml</summary><pre>{escape(params_yaml)}</pre></details>",
    ]
    return (
        "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>"
        "<meta name='viewport' content='width=device-width, initial-scale=1'>"
        f"<title>EmoGen report</title><style>{STYLE}</style></head><body>"
        f"<h1>EmoGen report</h1><p>Profile <b>{escape(str(inputs.table1.get('profile', '?')))}</b>, "
        f"commit <code>{escape(commit[:12])}</code>. Sections: <a href='#table1'>Table 1</a> · "
        "<a href='#images'>images</a> · <a href='#transfer'>transfer</a> · <a href='#intensity'>intensity</a> · "
        "<a href='#space'>emotion space</a> · <a href='#curves'>curves</a> · <a href='#validation'>validation</a> · "
        "<a href='#provenance'>provenance</a></p>" + "".join(sections) + "</body></html>\n"
    )
