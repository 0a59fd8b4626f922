"""Shared output helpers: data to stdout, everything else (progress, warnings) to stderr."""

from __future__ import annotations

import json
import re
import sys
from typing import Any

from rich.console import Console
from rich.markup import escape

# Text from a disk (names, paths, values) must reach the terminal inert: no escape sequences, no
# carriage returns or bidi overrides that redraw or reorder what the user reads. Tabs and newlines
# stay. Rich markup in such text is escaped by the callers (rich.markup.escape) where markup is on.
_UNSAFE = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u200e\u200f\u202a-\u202e\u2066-\u2069]")


def printable(text: str) -> str:
    """``text`` with control and bidi-override characters shown as \\xNN / \\uNNNN escapes."""
    return _UNSAFE.sub(lambda m: f"\\x{ord(m.group()):02x}" if ord(m.group()) < 0x100 else f"\\u{ord(m.group()):04x}", text)


class SafeConsole(Console):
    """A rich Console that renders every string (table cells included) through ``printable``."""

    def render_str(self, text, *args, **kwargs):
        return super().render_str(printable(text), *args, **kwargs)


# Progress, warnings and notes go to stderr; tables and JSON to stdout.
err = SafeConsole(stderr=True, highlight=False)


def out() -> Console:
    """stdout; long lines are not wrapped when stdout is a pipe or file."""
    return SafeConsole(highlight=False, soft_wrap=not sys.stdout.isatty())


def write_lines(lines) -> None:
    """Plain text to stdout, one line each, made inert by ``printable``."""
    sys.stdout.write("".join(printable(line) + "\n" for line in lines))


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
    err.print(f"[yellow]warning:[/yellow] {escape(message)}", soft_wrap=True)


def show_progress(json_mode: bool) -> bool:
    """Progress bars only on a terminal and never with --json."""
    return not json_mode and sys.stderr.isatty()


def report_change(result, *, target: str, lines=(), backup_dir: str | None = None) -> int:
    """Print what a write did (the caller's description ``lines``, then the files, the change id
    and how to undo it), or what a dry run would do. Returns the exit code (0)."""
    import shlex

    console = out()
    for line in lines:
        console.print(line, soft_wrap=True, markup=False)
    if result.status == "nothing-to-do":
        console.print("nothing to change")
        return 0
    for f in result.files:
        if f["sha256_before"] is None:
            console.print(f"  {f['path']}: created, {f['size_after']} bytes, sha256 {f['sha256_after'][:12]}..",
                          soft_wrap=True, markup=False)
        else:
            console.print(f"  {f['path']}: {f['bytes_changed']} bytes changed in a {f['size_before']}-byte file, "
                          f"sha256 {f['sha256_before'][:12]}.. -> {f['sha256_after'][:12]}..", soft_wrap=True, markup=False)
    if result.status == "dry-run":
        console.print(f"dry run: nothing written ({result.host_ranges} host byte ranges planned)")
        return 0
    console.print(f"change {result.change_id}: {result.status} ({'; '.join(result.checks)})", soft_wrap=True)
    extra = f" --backup-dir {shlex.quote(backup_dir)}" if backup_dir else ""
    console.print(f"undo with: offline-fix undo {shlex.quote(target)} --change {result.change_id}{extra}",
                  soft_wrap=True, markup=False)
    return 0
