"""The ``emogen`` command: a thin layer over the library (``dvc.yaml`` calls ``emogen stage``)."""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys
import time
from collections.abc import Callable

from emogen.config import DEFAULT_PARAMS, load_params, load_raw_params, profile_keys
from emogen.errors import UserError
from emogen.layout import Layout
from emogen.threads import apply_thread_policy, recheck_threads

# stage name → "module:function"; each function takes (Params, Layout) and writes files.
# Imported lazily so `emogen --help` and cheap stages don't load torch.
STAGES: dict[str, str] = {
    "prepare_data": "emogen.stages.prepare_data:run",
    "ingest": "emogen.stages.ingest:run",
    "validate": "emogen.stages.validate:run",
    "balance": "emogen.stages.balance:run",
    "stage1": "emogen.stages.stage1:run",
    "emotion_space": "emogen.stages.emotion_space:run",
    "confidence": "emogen.stages.confidence:run",
    "base_model": "emogen.stages.base_model:run",
    "latents": "emogen.stages.latents:run",
    "stage2": "emogen.stages.stage2:run",
    "generate": "emogen.stages.generate:run",
    "evaluators": "emogen.stages.evaluators:run",
    "evaluate": "emogen.stages.evaluate:run",
    "baseline@prompt": "emogen.stages.baseline:run_prompt",
    "baseline@textual_inversion": "emogen.stages.baseline:run_textual_inversion",
    "baseline@dreambooth": "emogen.stages.baseline:run_dreambooth",
    "intensity": "emogen.stages.intensity:run",
    "frontier": "emogen.stages.frontier:run",
    "report": "emogen.stages.report:run",
}

# Extra user commands: name → ("module:function" that adds its arguments, help text).
COMMANDS: dict[str, tuple[str, str]] = {
    "generate": ("emogen.commands.generate:add_generate", "generate images of emotions with a trained EmoGen pipeline"),
    "fuse": ("emogen.commands.generate:add_fuse", "fuse two emotions in one image (interpolation, two tokens, strips)"),
    "pipeline": (
        "emogen.commands.pipeline:add_pipeline",
        "run the stages with Prefect, retrain on a schedule, register + gate",
    ),
    "study": ("emogen.commands.study:add_study", "the report seeds as DVC experiments, pooled into metrics/study.json"),
    "demo": ("emogen.commands.demo:add_demo", "serve a local page to generate images interactively (127.0.0.1)"),
    "plots": ("emogen.commands.plots:add_plots", "DVC's plots (experiments too) as one HTML page that opens offline"),
}
# Commands that mostly wait (on dvc, on requests) are not counted as sharing the cores: the stages
# they start count themselves, and the demo counts itself while it generates (emogen/threads.py).
WAITING_COMMANDS = {"pipeline", "demo", "params"}


def _resolve(target: str) -> Callable:
    module, _, func = target.partition(":")
    return getattr(importlib.import_module(module), func)


def _run_stage(args: argparse.Namespace) -> None:
    from emogen.timings import write_timings

    started = time.perf_counter()
    params = load_params(args.params)
    apply_thread_policy(params)  # the params' `threads` key
    layout = Layout()
    stage = _resolve(STAGES[args.name])  # imports torch for the torch stages
    recheck_threads(force=True)
    stage(params, layout)
    if os.environ.get("RANK", "0") == "0":  # one file per stage, also under `accelerate launch`
        write_timings(layout.root, args.name, time.perf_counter() - started)  # metrics/timings/, not a DVC metric


def _check_params(args: argparse.Namespace) -> None:
    params = load_params(args.params)
    _, overlay, overlay_path = load_raw_params(args.params)
    keys = profile_keys(overlay)
    print(
        f"{args.params}: ok (profile {params.profile}: {overlay_path} sets {len(keys)} keys{': ' if keys else ''}"
        f"{', '.join(keys)})"
    )
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
    args = build_parser().parse_args(argv)  # imports no torch (tests/test_threads.py)
    # Before any stage or command imports torch (OpenMP reads its environment once, at load).
    apply_thread_policy(register_process=args.command not in WAITING_COMMANDS)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(name)s %(levelname)s %(message)s",
    )
    try:
        args.func(args)
    except UserError as exc:
        if args.verbose:
            raise
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except Exception as exc:
        if args.verbose or args.command == "stage":  # a stage's log (DVC's output) keeps its traceback
            raise
        reason = next((line for line in str(exc).splitlines() if line.strip()), "")
        print(
            f"error: {type(exc).__name__}: {reason} (`emogen -v {args.command} ...` shows the traceback)",
            file=sys.stderr,
        )
        return 1
    return 0
