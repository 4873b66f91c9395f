"""``emogen demo``: load one EmoGen pipeline and serve the demo page (emogen/demo, Gradio) on 127.0.0.1."""

from __future__ import annotations

import argparse
import logging

from emogen.demo.app import build_demo, check_host, launch
from emogen.errors import UserError
from emogen.registry.load import DEFAULT_MODEL, check_model_spec, load_pipeline

log = logging.getLogger(__name__)


def add_demo(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--model",
        default=DEFAULT_MODEL,
        help="pipeline folder or registry URI (models:/emogen@champion) (default: %(default)s)",
    )
    parser.add_argument("--host", default="127.0.0.1", help="a loopback address (default: %(default)s)")
    parser.add_argument("--port", type=int, default=7860)
    parser.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    parser.add_argument("--batch-size", type=int, default=1, help="images per pipeline call (progress per call)")
    parser.set_defaults(func=demo_command)


def demo_command(args: argparse.Namespace) -> None:
    if args.batch_size < 1:
        raise UserError(f"--batch-size {args.batch_size}: must be >= 1")
    if not 0 < args.port < 65536:
        raise UserError(f"--port {args.port}: must lie in 1..65535")
    check_host(args.host)
    check_model_spec(str(args.model))  # before anything loads
    pipe = load_pipeline(args.model, args.device)
    log.info("demo: %s loaded; open http://%s:%d/", args.model, args.host, args.port)
    launch(build_demo(pipe, str(args.model), args.batch_size), args.host, args.port)
