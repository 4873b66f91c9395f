"""``emogen demo``: a Gradio Blocks page over one loaded EmoGen pipeline, on 127.0.0.1 only.

Choose an emotion (optionally a second one to fuse with, an intensity, a template, a seed and
how many images), press Generate: the gallery fills in image by image as the pipeline finishes
them. Gradio's usage analytics are off; the page loads no font or script from outside this
machine (the theme uses the system's fonts).
"""

from __future__ import annotations

import ipaddress
import logging
import os
import threading
from collections.abc import Iterator

from emogen.emotions import EMOTIONS
from emogen.errors import UserError
from emogen.limits import DEMO_MAX_IMAGES, MIN_IMAGES

log = logging.getLogger(__name__)

MAX_IMAGES = DEMO_MAX_IMAGES  # docs/limits.md
LOOPBACK_NAMES = ("localhost",)


def _request_jobs(pipe, body: dict) -> list:
    """The form's fields → image jobs; every bad field is a UserError naming it."""
    from emogen.pipelines.jobs import ImageJob, check_emotions

    def number(key: str, cast, low: float, high: float | None = None):
        try:
            value = cast(body.get(key))
        except (TypeError, ValueError):
            raise UserError(f"{key}: expected a number, got {body.get(key)!r}") from None
        if value < low or (high is not None and value > high):
            raise UserError(f"{key}: must lie in [{low}, {high if high is not None else '∞'}], got {value}")
        return value

    emotion = check_emotions([str(body.get("emotion", ""))])[0]
    partner = str(body.get("partner") or "") or None
    if partner is not None:
        check_emotions([partner])
    template = str(body.get("template") or "{}")
    pipe.check_words(template)
    intensity = number("intensity", float, 0.0)
    weight = number("weight", float, 0.0, 1.0) if partner else None
    seed = number("seed", int, 0)
    count = number("num_images", int, MIN_IMAGES, MAX_IMAGES)
    return [
        ImageJob(emotion, seed + n, template, "", partner, "interpolate" if partner else None, weight, intensity)
        for n in range(count)
    ]


def caption(record) -> str:
    text = f"{record.emotion} s={record.intensity:g} seed {record.seed}"
    if record.emotion_2:
        text += f" + {record.emotion_2} w={record.weight:g}"
    return text


def _gradio():
    """Gradio, imported with its usage analytics off (read at import)."""
    os.environ["GRADIO_ANALYTICS_ENABLED"] = "False"
    try:
        import gradio as gr
    except ImportError:
        raise UserError("the demo needs Gradio: pip install -c constraints.txt -e '.[demo]'") from None
    return gr


def build_demo(pipe, model: str, batch_size: int = 1):
    """The page: the form, a Generate button (``#generate``), a status line (``#status``) and a
    gallery (``#gallery``) that grows by one image as each one is finished."""
    gr = _gradio()
    from emogen.pipelines.jobs import run_jobs
    from emogen.threads import busy

    lock = threading.Lock()  # one generation at a time: the pipeline is shared

    def generate(emotion, partner, weight, intensity, template, seed, num_images) -> Iterator[tuple[list, str]]:
        body = {
            "emotion": emotion,
            "partner": partner,
            "weight": weight,
            "intensity": intensity,
            "template": template,
            "seed": seed,
            "num_images": num_images,
        }
        try:
            jobs = _request_jobs(pipe, body)
        except (UserError, ValueError) as exc:
            raise gr.Error(str(exc)) from None
        images: list[tuple] = []
        yield images, f"generating 0 / {len(jobs)}"
        with lock, busy():
            try:
                for record, image in run_jobs(pipe, jobs, batch_size, desc="demo"):
                    images.append((image, caption(record)))
                    done = len(images)
                    yield (
                        list(images),
                        (f"done: {done} images" if done == len(jobs) else f"generating {done} / {len(jobs)}"),
                    )
            except UserError as exc:
                raise gr.Error(str(exc)) from None

    with gr.Blocks(title="EmoGen demo", analytics_enabled=False) as demo:
        gr.Markdown(f"## EmoGen demo\nModel: `{model}` · {pipe.config.resolution} px · one request at a time")
        with gr.Row():
            emotion = gr.Dropdown(list(EMOTIONS), value=EMOTIONS[0], label="Emotion", elem_id="emotion")
            partner = gr.Dropdown(["", *EMOTIONS], value="", label="Fuse with (optional)", elem_id="partner")
            weight = gr.Slider(0.0, 1.0, value=0.5, step=0.05, label="Weight of the second emotion", elem_id="weight")
        with gr.Row():
            intensity = gr.Number(
                1.0, minimum=0.0, label="Intensity s (1 = the emotion's own spread)", elem_id="intensity"
            )
            template = gr.Textbox("{}", label="Template ({} = the emotion)", elem_id="template")
            seed = gr.Number(0, precision=0, minimum=0, label="Seed (image n: seed + n)", elem_id="seed")
            num_images = gr.Slider(1, MAX_IMAGES, value=4, step=1, label="Images", elem_id="num_images")
        button = gr.Button("Generate", variant="primary", elem_id="generate")
        status = gr.Textbox("", label="Status", interactive=False, elem_id="status")
        gallery = gr.Gallery(label="Images", format="png", columns=4, object_fit="contain", elem_id="gallery")
        button.click(
            generate,
            [emotion, partner, weight, intensity, template, seed, num_images],
            [gallery, status],
            api_name="generate",
            concurrency_limit=1,
        )
    return demo


def check_host(host: str) -> str:
    """The demo is for this machine only: a loopback address or ``localhost``, else a UserError."""
    if host in LOOPBACK_NAMES:
        return host
    try:
        if ipaddress.ip_address(host).is_loopback:
            return host
    except ValueError:
        pass
    raise UserError(f"--host {host}: the demo binds this machine only (127.0.0.1, ::1 or localhost)")


def launch(demo, host: str, port: int, block: bool = True):
    """Serve ``demo`` on ``host:port`` (loopback only); ``block=False`` returns once it answers
    (tests: then ``demo.close()``)."""
    gr = _gradio()
    font = ["ui-sans-serif", "system-ui", "sans-serif"]  # no web fonts: nothing fetched from outside
    theme = gr.themes.Default(font=font, font_mono=["ui-monospace", "monospace"])
    return demo.launch(
        server_name=check_host(host),
        server_port=port,
        share=False,
        inbrowser=False,
        prevent_thread_lock=not block,
        show_error=True,
        ssr_mode=False,
        mcp_server=False,
        pwa=False,
        enable_monitoring=False,
        quiet=not block,
        theme=theme,
        footer_links=[],
    )
