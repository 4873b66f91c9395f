"""Stage 1 (SPEC.md): the emotion encoder, the emotion space and the emotion confidence α."""
