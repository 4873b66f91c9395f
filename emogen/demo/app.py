"""``emogen demo``: a FastAPI page over one loaded EmoGen pipeline, served by uvicorn on 127.0.0.1.

Gradio was the plan (issue 12), but no Gradio release installs beside the pinned stack
(gradio 6.31.0 requires pillow<13; the pins hold pillow==13.0.0), so the same page is built
with FastAPI (already a dependency) and uvicorn (the ``demo`` extra). ``POST /generate``
streams one JSON line per finished image, which the page turns into a progress bar.
"""

# No ``from __future__ import annotations``: FastAPI reads the handlers' annotations, and
# ``Request`` is imported inside build_app (fastapi is not imported by every `emogen` call).
import base64
import io
import json
import logging
import threading
from collections.abc import Iterator

from emogen.errors import UserError
from emogen.limits import DEMO_MAX_IMAGES, MIN_IMAGES

log = logging.getLogger(__name__)

MAX_IMAGES = DEMO_MAX_IMAGES  # docs/limits.md


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


def build_app(pipe, model: str, batch_size: int = 1):
    """The app: ``GET /`` the page, ``POST /generate`` the images (NDJSON stream)."""
    from fastapi import FastAPI, Request
    from fastapi.responses import HTMLResponse, JSONResponse, Response, StreamingResponse

    from emogen.demo.page import render_page
    from emogen.pipelines.jobs import run_jobs

    app = FastAPI(title="EmoGen demo")
    lock = threading.Lock()  # one generation at a time: the pipeline is shared

    @app.get("/", response_class=HTMLResponse)
    def page() -> str:
        return render_page(model, pipe.config.resolution)

    @app.get("/favicon.ico")
    def favicon():  # browsers ask for one; "no content" keeps the console free of 404s
        return Response(status_code=204)

    @app.post("/generate")
    async def generate(request: Request):
        try:
            jobs = _request_jobs(pipe, await request.json())
        except (UserError, ValueError) as exc:
            return JSONResponse({"error": str(exc)}, status_code=400)

        def stream() -> Iterator[bytes]:
            yield (json.dumps({"total": len(jobs)}) + "\n").encode()
            with lock:
                try:
                    for done, (record, image) in enumerate(run_jobs(pipe, jobs, batch_size, desc="demo"), 1):
                        buf = io.BytesIO()
                        image.save(buf, format="PNG")
                        uri = "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")
                        caption = f"{record.emotion} s={record.intensity:g} seed {record.seed}"
                        if record.emotion_2:
                            caption += f" + {record.emotion_2} w={record.weight:g}"
                        yield (json.dumps({"done": done, "image": uri, "caption": caption}) + "\n").encode()
                except UserError as exc:
                    yield (json.dumps({"error": str(exc)}) + "\n").encode()

        return StreamingResponse(stream(), media_type="application/x-ndjson")

    return app


def server(app, host: str, port: int):
    """A uvicorn server for ``app`` (call ``.run()``; tests run it in a thread)."""
    try:
        import uvicorn
    except ImportError:
        raise UserError("the demo needs uvicorn: pip install -c constraints.txt -e '.[demo]'") from None
    return uvicorn.Server(uvicorn.Config(app, host=host, port=port, log_level="info"))
