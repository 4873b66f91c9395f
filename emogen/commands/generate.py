"""``emogen generate`` and ``emogen fuse``: images from a trained EmoGen pipeline folder.

Light at import (``emogen.cli`` builds every sub-parser on each call): torch and the
pipeline are imported inside the handlers. The model is loaded once per command, however
many emotions are asked for.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from emogen.errors import UserError
from emogen.registry.load import DEFAULT_MODEL, check_model_spec, load_pipeline


def _emotion_list(values: list[str]) -> list[str]:
    from emogen.pipelines.jobs import check_emotions

    names = [name.strip() for value in values for name in value.split(",") if name.strip()]
    if not names:
        raise UserError("--emotion: give at least one emotion")
    return check_emotions(list(dict.fromkeys(names)))


def _add_common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--num-images", type=int, default=8, help="images per emotion (default: %(default)s)")
    parser.add_argument("--seed", type=int, default=0, help="image n uses seed SEED+n (default: %(default)s)")
    parser.add_argument("--out", required=True, type=Path, help="output folder (must not hold an index.json)")
    parser.add_argument("--template", default="{}", help="prompt with one {} for the emotion, e.g. '{} bag'")
    parser.add_argument(
        "--intensity",
        type=float,
        default=1.0,
        metavar="S",
        help="emotion intensity: 0 neutral centre, 1 the emotion's Gaussian, >1 beyond (default: %(default)s)",
    )
    parser.add_argument(
        "--model",
        default=DEFAULT_MODEL,
        help="pipeline folder or registry URI, e.g. models:/emogen@champion (default: %(default)s)",
    )
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--steps", type=int, default=None, help="denoising steps (default: the pipeline's)")
    parser.add_argument("--guidance", type=float, default=None, help="guidance scale (default: the pipeline's)")
    parser.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")


def add_generate(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--emotion",
        action="append",
        required=True,
        help="emotion name; repeat the flag or give a comma list (awe,fear)",
    )
    _add_common(parser)
    parser.set_defaults(func=generate_command)


def add_fuse(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("first", help="first emotion")
    parser.add_argument("second", help="second emotion")
    parser.add_argument(
        "--mode",
        choices=("interpolate", "tokens"),
        default="interpolate",
        help="interpolate: e = (1-w)·e1 + w·e2; tokens: one placeholder per emotion",
    )
    parser.add_argument("--weight", type=float, default=None, help="w of the second emotion (interpolate; default 0.5)")
    parser.add_argument(
        "--strip",
        type=int,
        default=None,
        metavar="K",
        help="interpolation strip: K images from w=0 to w=1 per seed (one grid row each)",
    )
    _add_common(parser)
    parser.set_defaults(func=fuse_command)


# The flags that set a generate param: checked by the params schema (emogen/config.py).
FLAG_PARAMS = {
    "--num-images": "num_images",
    "--batch-size": "batch_size",
    "--template": "template",
    "--steps": "num_inference_steps",
    "--guidance": "guidance_scale",
}


def check_generate_flags(values: dict[str, object]) -> None:
    """``{flag: value}`` (None: not given) checked against the generate params' own limits
    before any model loads; the error is one line naming the flag, its value and the limit."""
    from pydantic import ValidationError

    from emogen.config import GenerateParams

    given = {FLAG_PARAMS[flag]: value for flag, value in values.items() if value is not None}
    try:
        GenerateParams.model_validate(given)
    except ValidationError as exc:
        err = exc.errors()[0]
        field = str(err["loc"][0]) if err["loc"] else "template"
        flag = next((f for f, name in FLAG_PARAMS.items() if name == field), "--template")
        message = err["msg"].removeprefix("Value error, ")
        raise UserError(f"{flag} {values.get(flag)!r}: {message}") from None


def _check_counts(args: argparse.Namespace) -> None:
    check_generate_flags(
        {
            "--num-images": args.num_images,
            "--batch-size": args.batch_size,
            "--template": args.template,
            "--steps": args.steps,
            "--guidance": args.guidance,
        }
    )
    if args.seed < 0:
        raise UserError(f"--seed {args.seed}: must be >= 0")
    if args.intensity < 0:
        raise UserError(f"--intensity {args.intensity:g}: must be >= 0 (0: neutral centre, 1: the emotion's Gaussian)")
    check_model_spec(str(args.model))


def _generate(args: argparse.Namespace, jobs: list, grid_columns: int) -> None:
    from emogen.pipelines.jobs import run_jobs
    from emogen.pipelines.settings import sampling_settings
    from emogen.pipelines.writer import write_generated

    pipe = load_pipeline(args.model, args.device)
    pipe.check_words(args.template)
    images = run_jobs(pipe, jobs, args.batch_size, num_inference_steps=args.steps, guidance_scale=args.guidance)
    settings = sampling_settings(
        pipe, model=str(args.model), num_inference_steps=args.steps, guidance_scale=args.guidance
    )
    written = write_generated(args.out, "emogen", images, grid_columns=grid_columns, grid_cell=64, settings=settings)
    print(f"{written.count} images in {written.folder} (index: {written.index.name}, grids in grids/)")


def generate_command(args: argparse.Namespace) -> None:
    from emogen.pipelines.jobs import ImageJob

    emotions = _emotion_list(args.emotion)
    _check_counts(args)
    jobs = [
        ImageJob(e, args.seed + n, args.template, intensity=args.intensity)
        for e in emotions
        for n in range(args.num_images)
    ]
    _generate(args, jobs, grid_columns=min(args.num_images, 8))


def fuse_command(args: argparse.Namespace) -> None:
    from emogen.pipelines.jobs import ImageJob, check_emotions

    first, second = check_emotions([args.first, args.second])
    _check_counts(args)
    if args.mode == "tokens" and (args.weight is not None or args.strip is not None):
        raise UserError("--weight and --strip apply to --mode interpolate only")
    weight = 0.5 if args.weight is None else args.weight
    if not 0.0 <= weight <= 1.0:
        raise UserError(f"--weight must lie in [0, 1], got {weight}")
    seeds = [args.seed + n for n in range(args.num_images)]
    if args.strip is not None:
        if args.strip < 2:
            raise UserError(f"--strip needs K >= 2 images, got {args.strip}")
        group = f"{first}_to_{second}"
        steps = [k / (args.strip - 1) for k in range(args.strip)]
        # Same seed along a row: only w changes from one image to the next.
        jobs = [
            ImageJob(first, s, args.template, group, second, "interpolate", w, args.intensity)
            for s in seeds
            for w in steps
        ]
        _generate(args, jobs, grid_columns=args.strip)
        return
    if args.mode == "tokens":
        jobs = [
            ImageJob(first, s, args.template, f"{first}+{second}_tokens", second, "tokens", intensity=args.intensity)
            for s in seeds
        ]
    else:
        group = f"{first}+{second}_w{weight:g}"
        jobs = [ImageJob(first, s, args.template, group, second, "interpolate", weight, args.intensity) for s in seeds]
    _generate(args, jobs, grid_columns=min(args.num_images, 8))
