"""CLI commands for multi-label tags and duplicate finding.

Registered on the main `app` when `organizer.cli` imports this module."""
from __future__ import annotations

from .cli import app, fail, guarded, open_library, StoreOpt  # noqa: F401
