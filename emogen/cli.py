"""The ``emogen`` command: a thin layer over the library (``dvc.yaml`` calls ``emogen stage``)."""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from collections.abc import Callable

from emogen.config import DEFAULT_PARAMS, load_params, load_raw_params, profile_keys
from emogen.errors import UserError
from emogen.layout import Layout

# stage name → "module:function"; each function takes (Params, Layout) and writes files.
# Imported lazily so `emogen --help` and cheap stages don't load torch.
STAGES: dict[str, str] = {
    "prepare_data": "emogen.data.prepare:run",
    "ingest": "emogen.data.ingest:run",
    "validate": "emogen.data.validate:run",
    "balance": "emogen.data.balance:run",
    "stage1": "emogen.stage1.train:run",
    "emotion_space": "emogen.stage1.emotion_space:run",
    "confidence": "emogen.stage1.confidence:run",
    "base_model": "emogen.base.stage:run",
    "latents": "emogen.stage2.latents:run",
    "stage2": "emogen.stage2.train:run",
    "generate": "emogen.generation.stage:run",
    "evaluators": "emogen.evaluation.fit:run",
    "evaluate": "emogen.evaluation.stage:run",
    "baseline_prompt": "emogen.baselines.stage:run_prompt",
    "baseline_textual_inversion": "emogen.baselines.stage:run_textual_inversion",
    "baseline_dreambooth": "emogen.baselines.stage:run_dreambooth",
    "intensity": "emogen.generation.intensity:run",
    "frontier": "emogen.evaluation.frontier:run",
    "report": "emogen.report.stage:run",
}

# Extra user commands: name → ("module:function" that adds its arguments, help text).
COMMANDS: dict[str, tuple[str, str]] = {
    "generate": ("emogen.generation.commands:add_generate", "generate images of emotions with a trained EmoGen pipeline"),
    "fuse": ("emogen.generation.commands:add_fuse", "fuse two emotions in one image (interpolation, two tokens, strips)"),
    "pipeline": ("emogen.pipeline_commands:add_pipeline", "run the stages with Prefect, retrain on a schedule, register + gate"),
    "study": ("emogen.commands.study:add_study", "the report seeds as DVC experiments, pooled into metrics/study.json"),
    "demo": ("emogen.demo.app:add_demo", "serve a local page to generate images interactively (127.0.0.1)"),
}


def _resolve(target: str) -> Callable:
    module, _, func = target.partition(":")
    return getattr(importlib.import_module(module), func)


def _run_stage(args: argparse.Namespace) -> None:
    params = load_params(args.params)
    _resolve(STAGES[args.name])(params, Layout())


def _check_params(args: argparse.Namespace) -> None:
    params = load_params(args.params)
    _, overlay, overlay_path = load_raw_params(args.params)
    keys = profile_keys(overlay)
    print(f"{args.params}: ok (profile {params.profile}: {overlay_path} sets {len(keys)} keys{': ' if keys else ''}"
          f"{', '.join(keys)})")
    if args.show:
        print(params.model_dump_json(indent=2, by_alias=True))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="emogen", description=__doc__)
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True)

    stage = sub.add_parser("stage", help="run one pipeline stage (what dvc.yaml calls)")
    stage.add_argument("name", choices=sorted(STAGES))
    stage.add_argument("--params", default=DEFAULT_PARAMS, help="params file (default: %(default)s)")
    stage.set_defaults(func=_run_stage)

    check = sub.add_parser("params", help="validate params.yaml")
    check.add_argument("--params", default=DEFAULT_PARAMS)
    check.add_argument("--show", action="store_true", help="print the parsed values")
    check.set_defaults(func=_check_params)

    for name, (target, help_text) in COMMANDS.items():
        _resolve(target)(sub.add_parser(name, help=help_text))
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(name)s %(levelname)s %(message)s",
    )
    try:
        args.func(args)
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0
