"""`emogen demo`: the Gradio page served on 127.0.0.1 over a tiny pipeline, driven in headless
Chromium as a person would (click, type), and through Gradio's own client."""

import json

import pytest

from emogen.demo.app import MAX_IMAGES, _request_jobs, build_demo, check_host, launch
from emogen.errors import UserError
from emogen.registry.load import load_pipeline
from tests.helpers.browser import Browser
from tests.helpers.generation_inputs import saved_pipeline
from tests.helpers.servers import free_port


@pytest.fixture(scope="module")
def pipe(tmp_path_factory):
    folder = saved_pipeline(tmp_path_factory.mktemp("upstream"), num_inference_steps=2)
    return load_pipeline(str(folder), "cpu")  # as `emogen demo` loads it


@pytest.fixture(scope="module")
def demo_url(pipe):
    demo = build_demo(pipe, "tiny test pipeline")
    port = free_port()
    launch(demo, "127.0.0.1", port, block=False)
    yield f"http://127.0.0.1:{port}/"
    demo.close()


def test_bad_fields_are_named(pipe):
    good = {"emotion": "awe", "intensity": 1, "seed": 0, "num_images": 1}
    with pytest.raises(UserError, match="unknown emotion 'joy'"):
        _request_jobs(pipe, {**good, "emotion": "joy"})
    with pytest.raises(UserError, match=r"^intensity: must lie in"):
        _request_jobs(pipe, {**good, "intensity": -1})
    with pytest.raises(UserError, match=rf"^num_images: must lie in \[1, {MAX_IMAGES}\]"):
        _request_jobs(pipe, {**good, "num_images": MAX_IMAGES + 1})
    with pytest.raises(UserError, match="zebra"):
        _request_jobs(pipe, {**good, "template": "{} zebra"})


@pytest.mark.parametrize("host", ["0.0.0.0", "192.168.1.2", "example.org"])
def test_only_this_machine_is_served(host):
    assert check_host("127.0.0.1") == "127.0.0.1" and check_host("::1") == "::1"
    with pytest.raises(UserError, match=f"--host {host}: the demo binds this machine only"):
        check_host(host)


def test_client_streams_each_image_and_fuses(demo_url):
    from gradio_client import Client

    client = Client(demo_url, verbose=False)
    job = client.submit("awe", "fear", 0.25, 1.5, "{}", 4, 2, api_name="/generate")
    gallery, status = job.result(timeout=120)
    updates = job.outputs()  # every yield of the generator, in order
    assert [u[1] for u in updates] == ["generating 0 / 2", "generating 1 / 2", "done: 2 images"]
    assert [len(u[0]) for u in updates] == [0, 1, 2]
    assert status == "done: 2 images"
    assert [item["caption"] for item in gallery] == ["awe s=1.5 seed 4 + fear w=0.25", "awe s=1.5 seed 5 + fear w=0.25"]
    # Our checks' errors reach the page as Gradio errors (Gradio refuses an emotion off the list itself).
    with pytest.raises(Exception, match="zebra"):
        client.predict("awe", "", 0.5, 1.0, "{} zebra", 0, 1, api_name="/generate")
    with pytest.raises(Exception, match="not in the list of choices"):
        client.predict("joy", "", 0.5, 1.0, "{}", 0, 1, api_name="/generate")


def test_choose_emotion_press_generate_images_appear(demo_url, tmp_path):
    browser = Browser(tmp_path / "profile", width=1000, height=900)
    try:
        browser.open(demo_url)
        browser.wait_for("document.querySelector('#generate') !== null", timeout=60)
        browser.click("#emotion input")  # the emotion list opens; choose "fear"
        browser.wait_for("document.querySelectorAll('[role=option]').length === 8", timeout=10)
        browser.eval(
            "Array.from(document.querySelectorAll('[role=option]'))"
            ".find(o => o.textContent.trim().endsWith('fear')).id = 'pick'; true"
        )
        browser.click("#pick")
        chosen = browser.eval("document.querySelector('#emotion input').value")
        browser.fill("#num_images input[type=number]", "3")
        browser.fill("#seed input", "7")
        browser.click("#generate")
        browser.wait_for(
            "document.querySelector('#status textarea').value.startsWith('done')"
            " || document.querySelector('.toast-body') !== null",
            timeout=120,
        )
        # The gallery's last image may still be loading when the status says done.
        browser.wait_for("Array.from(document.querySelectorAll('#gallery img')).every(im => im.complete)", timeout=30)
        status = browser.eval("document.querySelector('#status textarea').value")
        images = browser.images()
        browser.screenshot(tmp_path / "demo.png")
        errors = browser.console_errors()
    finally:
        browser.close()
    assert chosen == "fear"
    assert status == "done: 3 images"
    assert [im["alt"] for im in images] == [f"fear s=1 seed {s}" for s in (7, 8, 9)], json.dumps(images)
    assert all(im["complete"] and im["width"] == 16 and im["shown"] > 0 and im["distinct"] >= 2 for im in images), (
        images
    )
    assert errors == []
