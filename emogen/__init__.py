"""EmoGen: emotional image content generation, as a reproducible pipeline."""

__version__ = "0.1.0"
