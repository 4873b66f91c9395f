"""The models and pipelines every stage builds on: loading the base model, the mapper, the
placeholder tokens, the emotion Gaussians, the text-conditioned / EmoGen / prompt pipelines, the
seeded image jobs and how generated images are written."""
