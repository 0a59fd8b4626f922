"""Checks made before anything is written. Each failure is a Refused with the reason and the way
out; ``--force`` lifts only the hibernation guard (with a warning)."""

from __future__ import annotations

from offline_fix.errors import Refused
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
