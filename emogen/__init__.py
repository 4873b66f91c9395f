"""EmoGen: emotional image content generation, as a reproducible pipeline."""

import logging as _logging

__version__ = "0.1.0"


class _NoTorchvisionFallbackNotice(_logging.Filter):
    """Drop transformers' notice that an image processor falls back to its PIL version because
    torchvision is not installed. diffusers' StableDiffusionPipeline module imports
    ``CLIPImageProcessor`` and ``SiglipImageProcessor`` (optional safety-checker / IP-adapter
    parts EmoGen never uses); this project never installs torchvision (pyproject.toml), so the
    PIL fallback is the intended one and the notice is noise. Only that message is dropped."""

    def filter(self, record: _logging.LogRecord) -> bool:
        message = record.getMessage()
        return not ("requires torchvision (not installed); falling back to" in message
                    and "ImageProcessor" in message)


# transformers logs it through the standard logger of this module (a filter set before the
# import applies once transformers adds its handlers).
_logging.getLogger("transformers.utils.import_utils").addFilter(_NoTorchvisionFallbackNotice())
