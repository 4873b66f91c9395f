"""``emogen plots show|diff``: DVC's plots as one page that opens offline (emogen/report/plots.py)."""

from __future__ import annotations

import argparse
from pathlib import Path

from emogen.report.plots import write_plots


def _plots(args: argparse.Namespace) -> None:
    page = write_plots(args.action, args.revisions if args.action == "diff" else args.targets, args.out)
    print(f"{page} (opens offline: vega is inside the page)")


def add_plots(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="action", required=True)
    show = sub.add_parser("show", help="the workspace's plots (`dvc plots show`)")
    show.add_argument("targets", nargs="*", help="plot files or names (default: all of dvc.yaml's)")
    diff = sub.add_parser("diff", help="plots of commits or experiments side by side (`dvc plots diff`)")
    diff.add_argument(
        "revisions", nargs="*", metavar="REV", help="commits or experiment names (default: HEAD vs workspace)"
    )
    for action in (show, diff):
        action.add_argument("-o", "--out", type=Path, default=Path("dvc_plots"), help="folder (default: %(default)s)")
        action.set_defaults(func=_plots)
