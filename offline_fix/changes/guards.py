"""Checks made before anything is written. Each failure is a Refused with the reason and the way
out; ``--force`` lifts only the hibernation guard (with a warning)."""

from __future__ import annotations

from offline_fix.errors import NotFound, Refused
from offline_fix.target import platform
from offline_fix.target.fs import FileSystem

# First four bytes of hiberfil.sys (PO_MEMORY_IMAGE Signature): a live image Windows resumes from.
LIVE_HIBERNATION = (b"hibr", b"HIBR", b"rstr", b"RSTR")


def hibernation_state(fs: FileSystem) -> str | None:
    """"live", "stale" or None (no hiberfil.sys)."""
    try:
        path = fs.resolve("hiberfil.sys")
        with fs.open(path) as fh:
            head = fh.read(4)
    except Exception:  # no file, or unreadable: nothing Windows could resume from
        return None
    return "live" if head in LIVE_HIBERNATION else "stale"


def check_hibernation(fs: FileSystem, force: bool, warn) -> None:
    if hibernation_state(fs) != "live":
        return
    message = ("the volume holds a live hibernation image (hiberfil.sys, e.g. from Fast Startup): Windows "
               "would resume from it and write over this change. Boot it and shut down fully "
               "(shutdown /s /t 0) first, or disable hibernation (powercfg /h off)")
    if not force:
        raise Refused(message + "; --force writes anyway")
    warn(message + "; writing anyway because of --force")


def check_device(host_path: str, is_device: bool) -> None:
    reasons = platform.in_use_reasons(host_path)
    if reasons:
        raise Refused("the target is in use: " + "; ".join(reasons) + ". Unmount or detach it first")
    if is_device:
        reason = platform.system_disk_reason(host_path)
        if reason:
            raise Refused(reason + "; offline-fix never writes to the system it runs on")


def check_unambiguous(fs: FileSystem, path: str, listings: dict | None = None) -> None:
    """Refuse a path any of whose components matches two entries of its folder case-insensitively
    (``SYSTEM`` beside ``system``): Windows would pick one, other readers another; offline-fix
    never guesses which file it is changing. ``listings`` (folder -> folded name -> names) keeps
    each folder's listing for the next path of the same change."""
    listings = {} if listings is None else listings
    parts = [p for p in path.replace("/", "\\").split("\\") if p]
    for i, part in enumerate(parts):
        folder = "\\".join(parts[:i])
        if folder.casefold() not in listings:
            try:
                entries = fs.listdir(folder)
            except NotFound:  # a folder a new file will create: nothing below it exists yet
                return
            by_name: dict[str, list[str]] = {}
            for entry in entries:
                by_name.setdefault(entry.name.casefold(), []).append(entry.name)
            listings[folder.casefold()] = by_name
        names = listings[folder.casefold()].get(part.casefold(), [])
        if len(names) > 1:
            raise Refused(f"{folder or '(volume root)'} holds {len(names)} entries named {part!r} differing only "
                          f"in case ({', '.join(repr(n) for n in names)}): offline-fix does not guess which one "
                          "Windows uses; nothing was written")
