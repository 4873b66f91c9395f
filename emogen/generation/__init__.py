"""Generation: the EmoGen pipeline, the ``generate`` stage and the user commands.

Light on purpose (no torch import): ``emogen.config`` imports :mod:`.templates`.
"""
