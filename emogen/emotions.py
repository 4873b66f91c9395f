"""The eight Mikels emotions, in EmoSet's ``info.json`` order (docs/method.md "Emotions")."""

EMOTIONS: tuple[str, ...] = (
    "amusement",
    "awe",
    "contentment",
    "excitement",
    "anger",
    "disgust",
    "fear",
    "sadness",
)
NUM_EMOTIONS = len(EMOTIONS)
EMOTION_TO_IDX: dict[str, int] = {name: i for i, name in enumerate(EMOTIONS)}
# Indices 0-3 are positive, 4-7 negative: the 2-class polarity some metrics use.
POSITIVE = frozenset(range(4))


def emotion_index(name: str) -> int:
    """Index of ``name``; an unknown name is an error that lists the valid ones."""
    try:
        return EMOTION_TO_IDX[name]
    except KeyError:
        raise ValueError(f"unknown emotion {name!r}; choose one of: {', '.join(EMOTIONS)}") from None


def polarity(index: int) -> int:
    """1 for a positive emotion, 0 for a negative one."""
    return int(index in POSITIVE)
