"""Where onceonly finds its contract files."""

from __future__ import annotations

import os
from pathlib import Path

SCHEMAS_ENV = "ONCEONLY_SCHEMAS"
_BESIDE_PACKAGES = Path(__file__).resolve().parent.parent / "schemas"  # resolved once


def schemas_dir() -> Path:
    """The contracts folder: `ONCEONLY_SCHEMAS`, else `schemas/` beside the packages."""
    configured = os.environ.get(SCHEMAS_ENV)
    if configured:
        return Path(configured)
    return _BESIDE_PACKAGES
