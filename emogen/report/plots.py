"""``emogen plots``: DVC's plots (``dvc plots show`` / ``dvc plots diff``, experiments
included) as one HTML page that opens without internet.

DVC's own page loads vega, vega-lite and vega-embed from a CDN, so offline its charts are
blank. This page carries them inline instead, from the ``vl-convert-python`` package (which
ships the three libraries; the ``plots`` extra), through DVC's ``--html-template`` option;
nothing else changes: the same plots, the same data, rendered by DVC. Without that package
the command says so; ``metrics/report.html`` (the report stage) draws the loss curves itself.
"""

from __future__ import annotations

import subprocess
import tempfile
from pathlib import Path

from emogen.errors import UserError

# DVC's plot templates are Vega-Lite v5 specs ($schema .../vega-lite/v5.json).
VEGA_LITE = "5.21"
PAGE = """<!DOCTYPE html>
<html><head><meta charset="utf-8"><title>DVC plots (offline)</title>
<style>body{{font-family:sans-serif}} .vega-embed{{margin:1em}}</style>
<script>{bundle}</script>
</head><body>
{{plot_divs}}
</body></html>
"""
INSTALL = (
    "offline plots need vl-convert-python, which ships vega, vega-lite and vega-embed: "
    "pip install -c constraints.txt -e '.[plots]' (or open metrics/report.html, which draws the "
    "loss curves itself)"
)


def offline_template() -> str:
    """A DVC ``--html-template`` with vega, vega-lite and vega-embed inline (no CDN)."""
    try:
        import vl_convert
    except ImportError:
        raise UserError(INSTALL) from None
    bundle = vl_convert.javascript_bundle(vl_version=VEGA_LITE)
    for placeholder in ("{plot_divs}", "{scripts}", "{refresh_tag}"):
        if placeholder in bundle:  # DVC fills these by text replacement over the whole page
            raise UserError(f"vl-convert's bundle holds {placeholder}: it cannot go into a DVC template")
    return PAGE.format(bundle=bundle.replace("</script", "<\\/script"))


def write_plots(action: str, args: list[str], out: Path, root: Path = Path(".")) -> Path:
    """``dvc plots <action> ARGS --html-template <offline page> -o OUT``; → OUT/index.html."""
    with tempfile.TemporaryDirectory(prefix="emogen-plots-") as tmp:
        template = Path(tmp) / "offline.html"
        template.write_text(offline_template())
        cmd = ["dvc", "plots", action, *args, "--html-template", str(template), "-o", str(out)]
        done = subprocess.run(cmd, cwd=root, capture_output=True, text=True)
    if done.returncode != 0:
        reason = next((line for line in done.stderr.splitlines() if line.startswith("ERROR")), done.stderr.strip())
        raise UserError(f"`{' '.join(cmd[:3])} ...` failed: {reason}")
    return Path(root) / out / "index.html"
