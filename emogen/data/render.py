"""Pixels of the synthetic EmoSet: backgrounds, shapes, and the brightness/colorfulness annotations.

Everything is a pure function of an :class:`ImageSpec` (its ``render_seed`` drives the
jitter), so images can be rendered in any order or process and still be identical.
Backgrounds are built at the output size (flat colours and gradients); shapes are drawn
at 4× and box-filtered down, so edges stay clean at 16–32 px.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from emogen.data.emoset import ANNOTATION_DIR, IMAGE_DIR
from emogen.data.synthetic_world import Attribute, ImageSpec, World
from emogen.emotions import EMOTIONS
from emogen.jsonio import write_json

SUPERSAMPLE = 4
PLAIN_RGB = (205, 205, 200)  # the unlabelled background of images without a scene
# Hasler–Süsstrunk colorfulness M is divided by this and clipped to [0, 1].
COLORFULNESS_SCALE = 150.0


def _mix(a: tuple[int, ...], b: tuple[int, ...], t: np.ndarray) -> np.ndarray:
    """Per-pixel blend of colours a→b by t (H, W) in [0, 1]."""
    a_, b_ = np.asarray(a, np.float32), np.asarray(b, np.float32)
    return a_ + (b_ - a_) * t[..., None]


def _background(look: str, size: int, rng: np.random.Generator) -> np.ndarray:
    """(size, size, 3) float32 RGB of a scene pattern (``look`` = scene name) or the plain one."""
    c = (np.arange(size, dtype=np.float32) + 0.5) / size
    y, x = np.broadcast_arrays(c[:, None], c[None, :])
    phase = rng.random()

    def where(mask: np.ndarray, a: tuple[int, ...], b: tuple[int, ...]) -> np.ndarray:
        return _mix(b, a, mask.astype(np.float32))

    if look == "plain":
        img = _mix(PLAIN_RGB, PLAIN_RGB, y)
    elif look == "playground":  # yellow/pink checkerboard
        img = where(((y * 4).astype(int) + (x * 4).astype(int)) % 2 == 0, (250, 215, 70), (245, 140, 185))
    elif look == "sky":  # night gradient with a few stars
        img = _mix((15, 25, 80), (110, 70, 160), y)
        for _ in range(5):
            img[rng.integers(0, int(size * 0.7)), rng.integers(0, size)] = (235, 235, 255)
    elif look == "beach":  # sky, sea, sand bands
        img = where(y < 0.4, (140, 200, 240), (230, 210, 150))
        img[(y >= 0.4) & (y < 0.55)] = (30, 110, 180)
    elif look == "racecourse":  # orange track with white lanes
        img = where((y * 5) % 1 < 0.14, (245, 245, 245), (205, 85, 45))
    elif look == "volcano":  # dark top, glowing red bottom
        img = _mix((40, 20, 20), (225, 70, 20), y**1.5)
    elif look == "swamp":  # olive with wavy brown mud
        mud = np.sin(2 * np.pi * (3 * y + 0.3 * np.sin(2 * np.pi * (2 * x + phase)))) > 0.3
        img = where(mud, (70, 60, 30), (105, 110, 45))
    elif look == "forest":  # dark green with black trunks, lighter canopy
        img = where((x * 6 + phase) % 1 < 0.22, (10, 25, 12), (25, 70, 35))
        img[y < 0.25] = (40, 100, 45)
    elif look == "cemetery":  # grey dusk over a dark ground
        img = _mix((70, 75, 90), (30, 32, 36), y)
        img[y > 0.7] = (40, 50, 40)
    elif look == "street":  # pale sky over asphalt with a dashed yellow line
        img = where(y < 0.45, (175, 180, 185), (85, 85, 90))
        img[(y > 0.7) & (y < 0.8) & ((x + phase) % 0.25 < 0.14)] = (225, 200, 60)
    else:
        raise ValueError(f"unknown background {look!r}")
    return img + rng.normal(0, 6, size=3).astype(np.float32)


def _draw_shape(draw: ImageDraw.ImageDraw, shape: str, cx: float, cy: float, r: float) -> None:
    """Draw ``shape`` of radius ``r`` centred on (cx, cy) into an "L" mask (255 = object)."""

    def rect(hw: float, hh: float, fill: int = 255) -> None:
        draw.rectangle([cx - hw, cy - hh, cx + hw, cy + hh], fill=fill)

    if shape == "disc":
        draw.ellipse([cx - r, cy - r, cx + r, cy + r], fill=255)
    elif shape == "ring":
        draw.ellipse([cx - r, cy - r, cx + r, cy + r], fill=255)
        draw.ellipse([cx - 0.55 * r, cy - 0.55 * r, cx + 0.55 * r, cy + 0.55 * r], fill=0)
    elif shape == "square":
        rect(0.8 * r, 0.8 * r)
    elif shape == "frame":
        rect(0.85 * r, 0.85 * r)
        rect(0.45 * r, 0.45 * r, fill=0)
    elif shape == "triangle":
        draw.polygon([(cx, cy - r), (cx + 0.95 * r, cy + 0.8 * r), (cx - 0.95 * r, cy + 0.8 * r)], fill=255)
    elif shape == "diamond":
        draw.polygon([(cx, cy - r), (cx + 0.7 * r, cy), (cx, cy + r), (cx - 0.7 * r, cy)], fill=255)
    elif shape == "plus":
        rect(0.95 * r, 0.3 * r)
        rect(0.3 * r, 0.95 * r)
    elif shape == "xcross":
        w = max(1, round(0.45 * r))
        draw.line([(cx - 0.75 * r, cy - 0.75 * r), (cx + 0.75 * r, cy + 0.75 * r)], fill=255, width=w)
        draw.line([(cx - 0.75 * r, cy + 0.75 * r), (cx + 0.75 * r, cy - 0.75 * r)], fill=255, width=w)
    elif shape == "star":
        angles = -np.pi / 2 + np.arange(10) * np.pi / 5
        radii = np.where(np.arange(10) % 2 == 0, r, 0.42 * r)
        draw.polygon([(cx + q * np.cos(a), cy + q * np.sin(a)) for a, q in zip(angles, radii)], fill=255)
    elif shape == "vbar":
        rect(0.3 * r, r)
    elif shape == "hbar":
        rect(r, 0.35 * r)
    elif shape == "dome":
        draw.pieslice([cx - r, cy - 0.6 * r, cx + r, cy + 1.4 * r], start=180, end=360, fill=255)
    else:
        raise ValueError(f"unknown shape {shape!r}")


def _paint(img: np.ndarray, obj: Attribute, cx: float, cy: float, r: float, rng: np.random.Generator) -> None:
    """Composite ``obj`` (antialiased via a supersampled mask) onto ``img`` in place."""
    size = img.shape[0]
    mask = Image.new("L", (size * SUPERSAMPLE, size * SUPERSAMPLE), 0)
    s = SUPERSAMPLE
    _draw_shape(ImageDraw.Draw(mask), obj.look, cx * s, cy * s, r * s)
    alpha = np.asarray(mask.reduce(s), np.float32)[..., None] / 255.0
    colour = np.asarray(obj.rgb, np.float32) + rng.normal(0, 10, size=3).astype(np.float32)
    img *= 1 - alpha
    img += alpha * colour


def render(spec: ImageSpec, world: World, size: int) -> np.ndarray:
    """The (size, size, 3) uint8 RGB image of ``spec``."""
    rng = np.random.default_rng(spec.render_seed)
    look = world.attribute(spec.scene).look if spec.scene else "plain"
    img = _background(look, size, rng)
    objects = [world.attribute(name) for name in spec.objects]
    if len(objects) == 1:
        centres, radius = [(0.5, 0.5)], rng.uniform(0.26, 0.32)
    else:  # side by side, the first on the left
        centres, radius = [(0.28, 0.5), (0.72, 0.5)], rng.uniform(0.18, 0.22)
    for obj, (cx, cy) in zip(objects, centres):
        jx, jy = rng.uniform(-0.06, 0.06, size=2)
        _paint(img, obj, (cx + jx) * size, (cy + jy) * size, radius * size, rng)
    img *= rng.uniform(0.85, 1.15)  # global exposure
    return np.clip(np.rint(img), 0, 255).astype(np.uint8)


def brightness(img: np.ndarray) -> float:
    """Mean luminance (Rec. 601) in [0, 1], rounded to 0.1 as EmoSet's annotations are."""
    lum = img[..., :3].astype(np.float32) @ np.array([0.299, 0.587, 0.114], np.float32)
    return round(float(lum.mean() / 255.0), 1)


def colorfulness(img: np.ndarray) -> float:
    """Hasler–Süsstrunk colorfulness / ``COLORFULNESS_SCALE``, clipped to [0, 1], rounded to 0.1."""
    r, g, b = (img[..., i].astype(np.float32) for i in range(3))
    rg, yb = r - g, 0.5 * (r + g) - b
    m = np.hypot(rg.std(), yb.std()) + 0.3 * np.hypot(rg.mean(), yb.mean())
    return round(min(float(m) / COLORFULNESS_SCALE, 1.0), 1)


def write_chunk(job: tuple[str, int, int, World, list[tuple[ImageSpec, str]]]) -> int:
    """Render ``items`` into an EmoSet folder: ``image/<emo>/<id>.jpg`` + ``annotation/<emo>/<id>.json``.

    One picklable job (root, size, JPEG quality, world, [(spec, id), ...]) so a worker pool can run it.
    """
    root, size, quality, world, items = job
    for spec, image_id in items:
        emotion = EMOTIONS[spec.emotion_idx]
        pixels = render(spec, world, size)
        Image.fromarray(pixels).save(f"{root}/{IMAGE_DIR}/{emotion}/{image_id}.jpg", "JPEG", quality=quality, subsampling=0)
        annotation = {"image_id": image_id, "emotion": emotion,
                      "brightness": brightness(pixels), "colorfulness": colorfulness(pixels)}
        if spec.scene:
            annotation["scene"] = spec.scene
        annotation["object"] = list(spec.objects)
        write_json(Path(f"{root}/{ANNOTATION_DIR}/{emotion}/{image_id}.json"), annotation, indent=None)
    return len(items)
