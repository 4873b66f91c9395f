"""`emogen demo`: the page served on 127.0.0.1 over a tiny pipeline, driven in headless Chromium."""

import json
import socket
import threading
import time
import urllib.error
import urllib.request

import pytest

from browser import Browser
from emogen.demo.app import build_app, server
from emogen.registry.load import load_pipeline
from generation_inputs import saved_pipeline


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def demo_url(tmp_path_factory):
    folder = saved_pipeline(tmp_path_factory.mktemp("upstream"), num_inference_steps=2)
    pipe = load_pipeline(str(folder), "cpu")  # as `emogen demo` loads it
    port = free_port()
    srv = server(build_app(pipe, "tiny test pipeline"), "127.0.0.1", port)
    thread = threading.Thread(target=srv.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 60
    while not srv.started:
        assert time.monotonic() < deadline and thread.is_alive(), "demo server did not start"
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}/"
    srv.should_exit = True
    thread.join(timeout=10)


def post(url, body):
    request = urllib.request.Request(url + "generate", json.dumps(body).encode(), {"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, [json.loads(line) for line in response.read().splitlines()]
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def test_bad_fields_are_named(demo_url):
    status, body = post(demo_url, {"emotion": "joy", "num_images": 1})
    assert status == 400 and "unknown emotion 'joy'" in body["error"]
    status, body = post(demo_url, {"emotion": "awe", "intensity": -1, "seed": 0, "num_images": 1})
    assert status == 400 and body["error"].startswith("intensity: must lie in")
    status, body = post(demo_url, {"emotion": "awe", "template": "{} zebra", "intensity": 1, "seed": 0, "num_images": 1})
    assert status == 400 and "zebra" in body["error"]


def test_stream_counts_images_and_fuses(demo_url):
    status, lines = post(demo_url, {"emotion": "awe", "partner": "fear", "weight": 0.25, "intensity": 1.5,
                                    "seed": 4, "num_images": 2, "template": "{}"})
    assert status == 200 and lines[0] == {"total": 2}
    assert [line["done"] for line in lines[1:]] == [1, 2]
    assert lines[1]["caption"] == "awe s=1.5 seed 4 + fear w=0.25"
    assert all(line["image"].startswith("data:image/png;base64,") for line in lines[1:])


def test_choose_emotion_press_generate_images_appear(demo_url, tmp_path):
    browser = Browser(tmp_path / "profile", width=1000, height=800)
    try:
        browser.open(demo_url)
        browser.eval("document.getElementById('emotion').value = 'fear';"
                     "document.getElementById('num_images').value = '3';"
                     "document.getElementById('seed').value = '7'; true")
        browser.eval("document.getElementById('generate').click(); true")
        browser.wait_for("document.getElementById('status').className === 'done'"
                         " || document.getElementById('status').className === 'error'", timeout=120)
        status = browser.eval("document.getElementById('status').textContent")
        progress = browser.eval("[document.getElementById('progress').value, document.getElementById('progress').max]")
        images = browser.images()
        browser.screenshot(tmp_path / "demo.png")
        errors = browser.console_errors()
    finally:
        browser.close()
    assert status == "done: 3 images"
    assert progress == [3, 3]
    assert [im["alt"] for im in images] == [f"fear s=1 seed {s}" for s in (7, 8, 9)]
    assert all(im["complete"] and im["width"] == 16 and im["shown"] > 0 and im["distinct"] >= 2 for im in images), images
    assert errors == []
