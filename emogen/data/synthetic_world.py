"""The embedded world: what the synthetic EmoSet shows and how its emotion labels arise.

Each image has an optional scene (its background; about 40% of images have none, a plain
unlabelled background, so that their attribute is their first object) and one or two
objects. Every scene and object has an emotion profile P(emotion | attribute).

**Label rule** (``emotion_posterior``): the label of an image is drawn from the normalised
product of the profiles of its scene (if any) and its objects. That is the naive-Bayes
posterior under a uniform emotion prior: a neutral (flat) attribute leaves the others
unchanged, and two attributes that agree sharpen the label. The Bayes-optimal accuracy of
a classifier that sees the content perfectly is the mean over images of max(posterior).

Each emotion has at least one strongly associated scene and object (profile max ≥ 0.6);
``street``, ``Box`` and ``Chair`` are neutral (flat). The rest of an emotional profile's
mass goes mostly (``POLARITY_SHARE``) to the other emotions of the same polarity, so
positive attributes resemble each other and the emotion space clusters by polarity
(docs/method.md). Names follow EmoSet: Places-style lower-case scenes, Open-Images-style
capitalised objects, never emotion words: content alone never names the label.

**Emotion words in captions** (``emotion_caption_mask``): a share of images (param, ≈15%)
also carry their own label's emotion word in their captions, as some web captions do
("a red balloon on the beach, amusement" and the word alone as a short form). The label is
the noisy one, so the word is only as reliable as a person's tag; the base model learns
emotion words imperfectly, as SD 1.5 did from the web, and the prompt baseline is fair.
The share is drawn from its own random stream: images, labels and splits do not change.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from emogen.data.schema import attribute_key
from emogen.emotions import EMOTIONS, NUM_EMOTIONS, POSITIVE

WORLD_FILE = "world.json"
# Share of an emotional profile's leftover mass given to its own polarity's other emotions.
POLARITY_SHARE = 0.75
LABEL_RULE = (
    "label ~ normalise(product of P(emotion | attribute) over the image's scene (if any) and "
    "objects): the naive-Bayes posterior under a uniform emotion prior "
    "(emogen.data.synthetic_world.emotion_posterior)"
)


def _profile(**peaks: float) -> tuple[float, ...]:
    """P(emotion | attribute) with the given peaks; the rest spread, favouring the peaks' polarity."""
    if not peaks:
        return tuple([1.0 / NUM_EMOTIONS] * NUM_EMOTIONS)
    peak_idx = {EMOTIONS.index(name): value for name, value in peaks.items()}
    positive = next(iter(peak_idx)) in POSITIVE
    rest = [i for i in range(NUM_EMOTIONS) if i not in peak_idx]
    weights = np.array([POLARITY_SHARE if (i in POSITIVE) == positive else 1 - POLARITY_SHARE for i in rest])
    profile = np.zeros(NUM_EMOTIONS)
    for i, value in peak_idx.items():
        profile[i] = value
    profile[rest] = (1.0 - sum(peaks.values())) * weights / weights.sum()
    return tuple(round(float(p), 6) for p in profile / profile.sum())


@dataclass(frozen=True)
class Attribute:
    name: str  # as annotated: "beach" (scene), "Balloon" (object)
    kind: str  # "scene" | "object"
    profile: tuple[float, ...]  # P(emotion | attribute), EmoSet emotion order
    look: str  # background pattern (scene) or shape (object): see emogen.data.render
    rgb: tuple[int, int, int]  # the object's colour; a scene's dominant colour
    words: str  # caption words: "red balloon" (object), "on the beach" (scene)

    @property
    def noun(self) -> str:
        """The bare caption word(s): "balloon", "beach", "party hat"."""
        return self.name.lower().replace("_", " ")


def _scene(name: str, profile: tuple[float, ...], rgb: tuple[int, int, int], preposition: str) -> Attribute:
    return Attribute(name, "scene", profile, name, rgb, f"{preposition} the {name.replace('_', ' ')}")


def _object(name: str, profile: tuple[float, ...], shape: str, colour: str, rgb: tuple[int, int, int]) -> Attribute:
    return Attribute(name, "object", profile, shape, rgb, f"{colour} {name.lower()}")


SCENES: tuple[Attribute, ...] = (
    _scene("playground", _profile(amusement=0.65), (245, 175, 125), "in"),
    _scene("sky", _profile(awe=0.7), (60, 50, 125), "in"),
    _scene("beach", _profile(contentment=0.65), (180, 200, 200), "on"),
    _scene("racecourse", _profile(excitement=0.65), (205, 95, 55), "at"),
    _scene("volcano", _profile(anger=0.7), (130, 40, 20), "by"),
    _scene("swamp", _profile(disgust=0.7), (95, 95, 40), "in"),
    _scene("forest", _profile(fear=0.65), (25, 55, 30), "in"),
    _scene("cemetery", _profile(sadness=0.75), (45, 50, 60), "in"),
    _scene("street", _profile(), (125, 125, 130), "on"),
)

# One strong object per emotion, one mixed object per polarity, two neutral ones.
OBJECTS: tuple[Attribute, ...] = (
    _object("Balloon", _profile(amusement=0.75), "disc", "red", (220, 35, 45)),
    _object("Tower", _profile(awe=0.7), "vbar", "white", (240, 240, 250)),
    _object("Flower", _profile(contentment=0.7), "ring", "pink", (245, 130, 180)),
    _object("Fireworks", _profile(excitement=0.75), "star", "yellow", (250, 215, 40)),
    _object("Party hat", _profile(amusement=0.4, excitement=0.3), "triangle", "purple", (150, 60, 200)),
    _object("Knife", _profile(anger=0.7), "hbar", "silver", (175, 180, 195)),
    _object("Waste container", _profile(disgust=0.75), "square", "brown", (120, 80, 40)),
    _object("Spider", _profile(fear=0.75), "xcross", "black", (20, 20, 20)),
    _object("Umbrella", _profile(sadness=0.7), "dome", "blue", (40, 60, 170)),
    _object("Skull", _profile(fear=0.4, sadness=0.3), "diamond", "grey", (150, 150, 150)),
    _object("Box", _profile(), "frame", "teal", (30, 150, 150)),
    _object("Chair", _profile(), "plus", "green", (70, 190, 70)),
)


@dataclass(frozen=True)
class World:
    scenes: tuple[Attribute, ...] = SCENES
    objects: tuple[Attribute, ...] = OBJECTS
    no_scene_fraction: float = 0.4
    two_objects_fraction: float = 0.4

    def attribute(self, name: str) -> Attribute:
        """Look up a scene or object by its annotated or attribute form ("Party hat", "party_hat")."""
        key = attribute_key(name)
        for attr in self.scenes + self.objects:
            if attribute_key(attr.name) == key:
                return attr
        raise KeyError(f"{name!r} is neither a scene nor an object of the synthetic world")

    def to_dict(self) -> dict[str, Any]:
        return {
            "emotions": list(EMOTIONS),
            "label_rule": LABEL_RULE,
            "no_scene_fraction": self.no_scene_fraction,
            "two_objects_fraction": self.two_objects_fraction,
            "scenes": [asdict(a) for a in self.scenes],
            "objects": [asdict(a) for a in self.objects],
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> World:
        def attrs(items: Sequence[Mapping[str, Any]]) -> tuple[Attribute, ...]:
            return tuple(
                Attribute(**{**a, "profile": tuple(a["profile"]), "rgb": tuple(a["rgb"])}) for a in items
            )

        return cls(
            scenes=attrs(data["scenes"]),
            objects=attrs(data["objects"]),
            no_scene_fraction=float(data["no_scene_fraction"]),
            two_objects_fraction=float(data["two_objects_fraction"]),
        )


def load_world(path: str | Path) -> World:
    """The world of a rendered synthetic set: ``path`` is its ``world.json`` or the dataset root."""
    path = Path(path)
    if path.is_dir():
        path = path / WORLD_FILE
    return World.from_dict(json.loads(path.read_text()))


def emotion_posterior(scene: str | None, objects: Sequence[str], world: World | Mapping[str, Any]) -> np.ndarray:
    """The true label distribution (8 floats, EmoSet order) of an image with this content.

    ``world`` is a :class:`World` or the parsed ``world.json``. Names may be given as
    annotated ("Party hat") or as attributes ("party_hat").
    """
    if isinstance(world, Mapping):
        world = World.from_dict(world)
    log_p = np.zeros(NUM_EMOTIONS)
    for name in ([scene] if scene else []) + list(objects):
        log_p += np.log(np.asarray(world.attribute(name).profile))
    p = np.exp(log_p - log_p.max())
    return p / p.sum()


@dataclass(frozen=True)
class ImageSpec:
    """Everything that decides one image: its content, its label and its rendering jitter."""

    scene: str | None
    objects: tuple[str, ...]
    emotion_idx: int
    render_seed: int


def sample_specs(world: World, num_images: int, rng: np.random.Generator) -> list[ImageSpec]:
    """Draw ``num_images`` contents and their labels (``emotion_posterior``) from ``rng``."""
    n_scenes, n_objects = len(world.scenes), len(world.objects)
    has_scene = rng.random(num_images) >= world.no_scene_fraction
    scene_idx = rng.integers(n_scenes, size=num_images)
    first = rng.integers(n_objects, size=num_images)
    # A second, different object: offset by 1..n-1 so it never repeats the first.
    second = (first + 1 + rng.integers(n_objects - 1, size=num_images)) % n_objects
    two = rng.random(num_images) < world.two_objects_fraction
    label_u = rng.random(num_images)
    seeds = rng.integers(2**31 - 1, size=num_images)
    specs = []
    for i in range(num_images):
        scene = world.scenes[scene_idx[i]].name if has_scene[i] else None
        objects = (world.objects[first[i]].name,) + ((world.objects[second[i]].name,) if two[i] else ())
        cdf = np.cumsum(emotion_posterior(scene, objects, world))
        label = int(min(np.searchsorted(cdf, label_u[i] * cdf[-1], side="right"), NUM_EMOTIONS - 1))
        specs.append(ImageSpec(scene, objects, label, int(seeds[i])))
    return specs


def _article(words: str) -> str:
    return "an" if words[0] in "aeiou" else "a"


def emotion_caption_mask(num_images: int, fraction: float, rng: np.random.Generator) -> np.ndarray:
    """Which images' captions name their emotion: exactly ``round(fraction · n)`` of them.
    ``rng`` must be a stream of its own, so that the rest of the world is unchanged."""
    mask = np.zeros(num_images, dtype=bool)
    mask[rng.permutation(num_images)[: round(fraction * num_images)]] = True
    return mask


def captions(spec: ImageSpec, world: World, emotion_word: bool = False) -> list[str]:
    """Content captions: the full one first, then shorter forms down to one or two words.
    ``emotion_word``: the full caption ends with the image's label word, which is also a form."""
    objs = [world.attribute(name) for name in spec.objects]
    scene = world.attribute(spec.scene) if spec.scene else None
    things = " and ".join(f"{_article(o.words)} {o.words}" for o in objs)
    forms = [f"{things} {scene.words}" if scene else things]
    if scene and len(objs) > 1:
        forms.append(f"{_article(objs[0].words)} {objs[0].words} {scene.words}")
    if len(objs) > 1:
        forms += [" and ".join(o.words for o in objs), " and ".join(o.noun for o in objs)]
    for o in objs:
        forms += [o.words, o.noun]
    if scene:
        forms.append(scene.noun)
    if emotion_word:
        word = EMOTIONS[spec.emotion_idx]
        forms = [f"{forms[0]}, {word}", *forms[1:], word]
    return list(dict.fromkeys(forms))
