"""The base text-to-image model: resolved (SD 1.5 + CLIP ViT-L/14) or trained (embedded).

``load_base`` in :mod:`emogen.pipelines.components` is how every other stage loads it.
"""
