"""Shared output helpers: data to stdout, everything else (progress, warnings) to stderr."""

from __future__ import annotations

import json
import sys
from typing import Any

from rich.console import Console

# Progress, warnings and notes go to stderr; tables and JSON to stdout.
err = Console(stderr=True, highlight=False)


def out() -> Console:
    """stdout; long lines are not wrapped when stdout is a pipe or file."""
    return Console(highlight=False, soft_wrap=not sys.stdout.isatty())


def _default(obj: Any) -> Any:
    if isinstance(obj, bytes):
        return obj.hex()
    if isinstance(obj, (set, frozenset)):
        return sorted(obj)
    to_dict = getattr(obj, "to_dict", None)
    if callable(to_dict):
        return to_dict()
    if hasattr(obj, "isoformat"):
        return obj.isoformat()
    return str(obj)


def emit_json(doc: Any) -> None:
    """Print one JSON document to stdout, no colour."""
    sys.stdout.write(json.dumps(doc, indent=2, default=_default, ensure_ascii=False))
    sys.stdout.write("\n")
    sys.stdout.flush()


def warn(message: str) -> None:
    err.print(f"[yellow]warning:[/yellow] {message}", soft_wrap=True)


def show_progress(json_mode: bool) -> bool:
    """Progress bars only on a terminal and never with --json."""
    return not json_mode and sys.stderr.isatty()
