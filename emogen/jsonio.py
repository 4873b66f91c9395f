"""Reading the JSON files users and stages hand each other, with errors that name the file."""

from __future__ import annotations

import json
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
