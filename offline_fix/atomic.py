"""Writing a whole file so that a crash leaves the old one or the new one, never a mix: a temporary
file beside it, fsync, rename over it, fsync the folder. Used for state files, caches, baselines
and reports; the target's own files go through offline_fix/changes instead. A leaf module, like
errors.py: every layer may use it."""

from __future__ import annotations

import os
import sys

from offline_fix.errors import NotFound, PermissionDenied


def fsync_dir(path: str | os.PathLike) -> None:
    """Make a rename or a new file in ``path`` durable (a no-op where folders cannot be opened)."""
    if sys.platform == "win32":
        return
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def write_atomic(path: str | os.PathLike, data: str | bytes, *, mode: int = 0o644) -> None:
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    tmp = os.path.join(folder, f".{os.path.basename(path)}.tmp-{os.getpid()}")
    flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | getattr(os, "O_BINARY", 0)
    try:
        fd = os.open(tmp, flags, mode)
    except FileNotFoundError:
        raise NotFound(f"the folder of {path} does not exist") from None
    except PermissionError:
        raise PermissionDenied(f"cannot write in {folder}") from None
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data.encode("utf-8") if isinstance(data, str) else data)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, mode)  # umask or an old temporary file cannot widen it
        os.replace(tmp, path)
    except IsADirectoryError:
        raise NotFound(f"{path} is a folder") from None
    except PermissionError:
        raise PermissionDenied(f"cannot write {path}") from None
    finally:
        if os.path.lexists(tmp):
            os.unlink(tmp)
    fsync_dir(folder)
