"""``emogen study seeds``: the report seeds as DVC experiments, pooled into metrics/study.json
(flows/study.py; docs/study.md). Loaded by Prefect entrypoint, so the library never imports flows/."""

from __future__ import annotations

import argparse
import json

STUDY_FLOW = "flows/study.py:study"


def _seeds(args: argparse.Namespace) -> None:
    from emogen.commands.pipeline import load_flow
    from emogen.orchestration import parse_overrides

    result = load_flow(STUDY_FLOW)(
        root=".",
        seeds=args.seeds,
        overrides=parse_overrides(args.set) or None,
        targets=args.target if args.target else None,
    )
    print(
        json.dumps(
            {"seeds": result["seeds"], "seconds": result["seconds"], "comparisons": result["comparisons"]}, indent=1
        )
    )


def add_study(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="action", required=True)
    seeds = sub.add_parser(
        "seeds",
        help="run each report seed (study.seeds) as a DVC experiment and pool them "
        "into study.output (metrics/study.json); done seeds are reused",
    )
    seeds.add_argument("--seeds", type=int, nargs="+", default=None, help="report seeds (default: study.seeds)")
    seeds.add_argument(
        "-S",
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="one more override for every seed, beside study.overrides (e.g. -S frontier.num_images=64)",
    )
    seeds.add_argument(
        "--target",
        action="append",
        default=[],
        metavar="STAGE",
        help="stage each experiment runs, with its upstream (repeatable; default: study.targets)",
    )
    seeds.set_defaults(func=_seeds)
