"""Stage 2 of EmoGen: the mapper from emotion space into the text encoder's token space."""
