"""Prompt templates: where the emotion token goes (kept free of torch: config imports it)."""

from __future__ import annotations


def template_problem(template: str) -> str | None:
    """Why ``template`` is unusable, or None: it must hold exactly one ``{}`` and no other braces."""
    rest = template.replace("{}", "", 1)
    if template.count("{}") != 1 or "{" in rest or "}" in rest:
        return (
            f"template {template!r} must contain exactly one '{{}}' (where the emotion goes) and no "
            "other braces, e.g. '{} bag'"
        )
    return None


def template_word(template: str) -> str:
    """What a transfer template names besides the emotion: ``"{} box"`` → ``"box"``."""
    return " ".join(template.replace("{}", " ").split())
