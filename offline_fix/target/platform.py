"""Everything that differs between Linux and Windows helpers, in one place.

Block-device discovery and sizing, whether something is mounted, and (later) exclusive locks.
The Windows branches are plain functions of their inputs so that their logic is tested on Linux.
"""

from __future__ import annotations

import os
import re
import stat
import sys

IS_WINDOWS = sys.platform == "win32"

_WIN_PHYSICAL = re.compile(r"^\\\\[.?]\\(PhysicalDrive\d+|[A-Za-z]:)$", re.IGNORECASE)
_WIN_DRIVE = re.compile(r"^[A-Za-z]:\\?$")


def is_windows_device_path(spec: str) -> bool:
    r"""\\.\PhysicalDrive2 or \\.\F: (a raw volume)."""
    return bool(_WIN_PHYSICAL.match(spec))


def windows_drive_root(spec: str) -> str | None:
    r""""F:" or "F:\" names a mounted volume's root folder on Windows."""
    if _WIN_DRIVE.match(spec):
        return spec[0].upper() + ":\\"
    return None


def is_block_device(path: str) -> bool:
    if is_windows_device_path(path):
        return True
    try:
        return stat.S_ISBLK(os.stat(path).st_mode)
    except OSError:
        return False


def device_size(fh, path: str) -> int:
    """Size in bytes of an opened block device (or file)."""
    if IS_WINDOWS and is_windows_device_path(path):  # pragma: no cover - needs a Windows host
        return _windows_device_size(fh)
    return fh.seek(0, os.SEEK_END)


def _windows_device_size(fh) -> int:  # pragma: no cover - needs a Windows host
    import ctypes
    import msvcrt
    from ctypes import wintypes

    IOCTL_DISK_GET_LENGTH_INFO = 0x7405C
    handle = msvcrt.get_osfhandle(fh.fileno())
    length = ctypes.c_longlong(0)
    returned = wintypes.DWORD(0)
    ok = ctypes.windll.kernel32.DeviceIoControl(
        wintypes.HANDLE(handle), IOCTL_DISK_GET_LENGTH_INFO, None, 0,
        ctypes.byref(length), ctypes.sizeof(length), ctypes.byref(returned), None)
    if not ok:
        raise OSError(ctypes.get_last_error(), "IOCTL_DISK_GET_LENGTH_INFO failed")
    return length.value
