"""Everything that differs between Linux and Windows helpers, in one place.

Block-device discovery and sizing, whether something is mounted, exclusive locks, and reading
the files of a folder by name without following links.
The Windows branches are plain functions of their inputs so that their logic is tested on Linux.
"""

from __future__ import annotations

import os
import re
import stat
import sys
import weakref

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


# -- what is mounted, what the helper runs from (Linux: /proc and /sys; Windows: see below) -------

def _unescape_mountinfo(field: str) -> str:
    return re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), field)


def parse_mountinfo(text: str) -> list[dict]:
    """Entries of /proc/self/mountinfo: mount point, source device, filesystem, major:minor."""
    mounts = []
    for line in text.splitlines():
        left, sep, right = line.partition(" - ")
        if not sep:
            continue
        fields, tail = left.split(), right.split()
        if len(fields) < 5 or len(tail) < 2:
            continue
        mounts.append({"devno": fields[2], "root": _unescape_mountinfo(fields[3]),
                       "mount_point": _unescape_mountinfo(fields[4]), "fstype": tail[0],
                       "source": _unescape_mountinfo(tail[1])})
    return mounts


def read_mountinfo() -> list[dict]:
    try:
        with open("/proc/self/mountinfo", encoding="utf-8", errors="replace") as fh:
            return parse_mountinfo(fh.read())
    except OSError:
        return []


def _sysfs_name(devpath: str) -> str | None:
    """/dev/sdc -> "sdc"; /dev/nvme1n1 -> "nvme1n1"; follows /dev/disk/by-* links."""
    try:
        st = os.stat(devpath)
    except OSError:
        return None
    if not stat.S_ISBLK(st.st_mode):
        return None
    link = f"/sys/dev/block/{os.major(st.st_rdev)}:{os.minor(st.st_rdev)}"
    try:
        return os.path.basename(os.path.realpath(link))
    except OSError:
        return None


def _whole_disk(name: str) -> str:
    """The disk a partition belongs to in sysfs ("sdc1" -> "sdc"), itself for a whole disk."""
    path = os.path.realpath(f"/sys/class/block/{name}")
    if os.path.exists(os.path.join(path, "partition")):
        return os.path.basename(os.path.dirname(path))
    return name


def _disk_members(disk: str) -> set[str]:
    """The disk and its partitions, by sysfs name."""
    names = {disk}
    base = f"/sys/class/block/{disk}"
    try:
        for entry in os.listdir(base):
            if os.path.exists(os.path.join(base, entry, "partition")):
                names.add(entry)
    except OSError:
        pass
    return names


def _devno_of(name: str) -> str | None:
    try:
        with open(f"/sys/class/block/{name}/dev") as fh:
            return fh.read().strip()
    except OSError:
        return None


def loop_devices_backed_by(path: str) -> list[str]:
    """Loop devices whose backing file is ``path`` (an image attached with losetup)."""
    real = os.path.realpath(path)
    found = []
    try:
        names = os.listdir("/sys/block")
    except OSError:
        return found
    for name in names:
        if not name.startswith("loop"):
            continue
        try:
            with open(f"/sys/block/{name}/loop/backing_file") as fh:
                backing = fh.read().strip()
        except OSError:
            continue
        if os.path.realpath(backing.removesuffix(" (deleted)")) == real:
            found.append(name)
    return found


def in_use_reasons(path: str, mounts: list[dict] | None = None) -> list[str]:
    """Why writing to this image or device now would be unsafe: mounted, attached, held."""
    if IS_WINDOWS:  # pragma: no cover - needs a Windows host
        return _windows_in_use_reasons(path)
    mounts = read_mountinfo() if mounts is None else mounts
    reasons = []
    real = os.path.realpath(path)
    for m in mounts:
        if m["source"] == real or m["source"] == path:
            reasons.append(f"{path} is mounted at {m['mount_point']}")
    disks = []
    name = _sysfs_name(path)
    if name is not None:
        disks.append(_whole_disk(name))
    else:
        disks.extend(loop_devices_backed_by(path))
        if disks:
            reasons.append(f"{path} is attached as /dev/{', /dev/'.join(disks)}")
    for disk in disks:
        for member in sorted(_disk_members(disk)):
            devno = _devno_of(member)
            for m in mounts:
                if devno and m["devno"] == devno:
                    reasons.append(f"/dev/{member} is mounted at {m['mount_point']}")
            try:
                holders = os.listdir(f"/sys/class/block/{member}/holders")
            except OSError:
                holders = []
            for holder in holders:
                reasons.append(f"/dev/{member} is held by /dev/{holder} (device-mapper, LVM, RAID or dislocker)")
    return list(dict.fromkeys(reasons))


def system_disk_reason(path: str, mounts: list[dict] | None = None) -> str | None:
    """A reason when ``path`` is the disk (or a partition of the disk) the helper itself runs from."""
    if IS_WINDOWS:  # pragma: no cover - needs a Windows host
        return None
    name = _sysfs_name(path)
    if name is None:
        return None
    mounts = read_mountinfo() if mounts is None else mounts
    root = next((m for m in mounts if m["mount_point"] == "/"), None)
    if root is None:
        return None
    target_disk = _whole_disk(name)
    for member in _disk_members(target_disk):
        if _devno_of(member) == root["devno"]:
            return f"{path} holds this helper's own running system (/ is on /dev/{member})"
    return None


_WIN_DRIVE_NUMBER = re.compile(r"^\\\\[.?]\\PhysicalDrive(\d+)$", re.IGNORECASE)


def windows_in_use_reasons(path: str, disk: dict | None, image: dict | None) -> list[str]:
    r"""Why a Windows helper must not write ``path``, from what PowerShell reports:
    ``disk`` is `Get-Disk -Number N | ConvertTo-Json` for a \\.\PhysicalDriveN, ``image`` is
    `Get-DiskImage -ImagePath PATH | ConvertTo-Json` for an image file (None when not asked)."""
    reasons = []
    if disk is not None:
        number = disk.get("Number", "?")
        if disk.get("IsSystem") or disk.get("IsBoot"):
            reasons.append(f"disk {number} holds this helper's own running system (IsSystem/IsBoot)")
        if not disk.get("IsOffline", False):
            reasons.append(f"disk {number} is online on this helper: take it offline first "
                           f"(Set-Disk -Number {number} -IsOffline $true)")
    if image is not None and image.get("Attached"):
        reasons.append(f"{path} is attached on this helper (Mount-VHD / Mount-DiskImage): dismount it first")
    return reasons


def _powershell_json(command: str) -> dict | None:  # pragma: no cover - needs a Windows host
    import json
    import subprocess

    proc = subprocess.run(["powershell.exe", "-NoProfile", "-NonInteractive", "-Command",
                           command + " | ConvertTo-Json -Compress"], capture_output=True, text=True, timeout=60)
    if proc.returncode != 0 or not proc.stdout.strip():
        return None
    doc = json.loads(proc.stdout)
    return doc[0] if isinstance(doc, list) and doc else doc if isinstance(doc, dict) else None


def _windows_in_use_reasons(path: str) -> list[str]:  # pragma: no cover - needs a Windows host
    match = _WIN_DRIVE_NUMBER.match(path)
    disk = _powershell_json(f"Get-Disk -Number {match.group(1)}") if match else None
    image = None
    if not match and path.lower().endswith((".vhd", ".vhdx", ".iso")):
        quoted = path.replace("'", "''")
        image = _powershell_json(f"Get-DiskImage -ImagePath '{quoted}'")
    return windows_in_use_reasons(path, disk, image)


# -- exclusive locks ------------------------------------------------------------------------------

class LockBusy(Exception):
    pass


def lock_exclusive(fh) -> None:
    """Take an exclusive, non-blocking lock on an open file; LockBusy when someone holds it."""
    if IS_WINDOWS:  # pragma: no cover - needs a Windows host
        import msvcrt

        try:
            msvcrt.locking(fh.fileno(), msvcrt.LK_NBLCK, 1)
        except OSError as exc:
            raise LockBusy(str(exc)) from None
        return
    import fcntl

    try:
        fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError as exc:
        raise LockBusy(str(exc)) from None


def state_home() -> str:
    """Where offline-fix keeps journals and backups by default."""
    if IS_WINDOWS:  # pragma: no cover - needs a Windows host
        base = os.environ.get("LOCALAPPDATA") or os.path.expanduser("~\\AppData\\Local")
        return os.path.join(base, "offline-fix", "state")
    base = os.environ.get("XDG_STATE_HOME") or os.path.expanduser("~/.local/state")
    return os.path.join(base, "offline-fix")


# --- whole files of one folder, by name ------------------------------------------------------
_NOFOLLOW = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_BINARY", 0)


class OpenFolder:
    """An open directory whose files are read by name: one path walk for the folder instead of
    one per file, the folder listed is the folder read, and a link is never followed (O_NOFOLLOW:
    ELOOP). Closed when the last user goes away. Linux and other POSIX helpers (``open_folder``)."""

    __slots__ = ("fd", "__weakref__")

    def __init__(self, path: str) -> None:
        self.fd = os.open(path, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
        weakref.finalize(self, os.close, self.fd)

    def read(self, name: str, limit: int) -> tuple[bytes, int, int]:
        """(whole file, size, st_mtime_ns) of ``name`` inside this folder (see read_whole)."""
        return read_whole(os.open(name, _NOFOLLOW, dir_fd=self.fd), limit)


def open_folder(path: str) -> OpenFolder | None:
    """An OpenFolder for ``path``, or None where files cannot be opened relative to a folder
    (Windows: open full paths instead). OSError when the folder cannot be opened."""
    return OpenFolder(path) if os.open in os.supports_dir_fd else None


def open_nofollow(path: str) -> int:
    """A file descriptor for reading ``path``; its last component is not followed if a link
    (where the OS can say so: O_NOFOLLOW)."""
    return os.open(path, _NOFOLLOW)


def read_whole(fd: int, limit: int) -> tuple[bytes, int, int]:
    """Read an open file to its end and close it: (bytes, size, st_mtime_ns), size and mtime from
    the open file (they describe the bytes read). One read(2) of its size + 1 when it does not
    change meanwhile, more (up to ``limit``) when it grows or reads short; OSError EFBIG beyond."""
    try:
        st = os.fstat(fd)
        if st.st_size > limit:
            raise OSError(27, f"file larger than {limit} bytes")
        data = os.read(fd, st.st_size + 1)
        if len(data) == st.st_size:
            return data, st.st_size, st.st_mtime_ns
        parts = [data]
        total = len(data)
        while data and total <= limit:
            data = os.read(fd, min(1 << 20, limit + 1 - total))
            parts.append(data)
            total += len(data)
    finally:
        os.close(fd)
    if total > limit:
        raise OSError(27, f"file larger than {limit} bytes")
    return b"".join(parts), st.st_size, st.st_mtime_ns
