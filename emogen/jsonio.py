"""Reading the JSON files users and stages hand each other, with errors that name the file."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from emogen.errors import UserError


def read_json(
    path: Path,
    missing: str,
    error: type[UserError] = UserError,
    missing_error: type[UserError] | None = None,
) -> Any:
    """Parse ``path``; a missing file raises ``missing_error`` (default ``error``) with the
    hint ``missing``, an unreadable or malformed one raises ``error``."""
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise (missing_error or error)(f"{path}: {missing}") from None
    except (OSError, ValueError) as exc:
        raise error(f"{path}: not valid JSON: {exc}") from None


def write_json(path: Path, data: Any, indent: int | None = 2, ensure_ascii: bool = True, default=None) -> None:
    """Write ``data`` as JSON (NaN, which JSON cannot hold, becomes null), creating the folder;
    ``indent=None`` writes one compact line (the EmoSet annotation format); ``default`` as in
    ``json.dumps`` (for library objects that only know their string form)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    text = json.dumps(_without_nan(data), indent=indent, ensure_ascii=ensure_ascii, default=default)
    path.write_text(text + "\n" if indent is not None else text, encoding="utf-8")


def _without_nan(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _without_nan(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_without_nan(v) for v in value]
    if isinstance(value, float) and math.isnan(value):
        return None
    return value
