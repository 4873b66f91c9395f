"""Stage 1 (docs/method.md): the emotion encoder, the emotion space and the emotion confidence α."""
