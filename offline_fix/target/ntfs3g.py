"""A small ctypes binding to libntfs-3g: read and write an NTFS volume held in a file.

The volume is a file of its own (a partition image, not a whole disk). Nothing is mounted
through FUSE and no loop device is used, so this runs unprivileged. Every libntfs-3g failure
becomes an :class:`~offline_fix.errors.OfflineFixError` subclass carrying the errno text, and
the volume is always unmounted (``with NtfsVolume(path) as vol: ...``).

Paths are Windows paths relative to the volume root; ``\\`` and ``/`` both separate
components (``Windows\\System32\\config\\SYSTEM``). Names are encoded to UTF-16LE here, as
NTFS stores them, rather than through ``ntfs_mbstoucs``, whose result depends on the process
locale. Names libntfs-3g creates are in the POSIX namespace. Lookups are case-insensitive, as on Windows,
unless the volume is opened with ``case_sensitive=True`` (which lets hostile-disk tests create
names that differ only in case): an exact match is asked of libntfs-3g first, then the directory's
names are compared upper-cased (Python's one-to-one upper-casing stands for the volume's $UpCase
table), from a per-directory table kept current by this object's own writes.

Overlay mode (``NtfsVolume(overlay=VolumeOverlay(read, size))``): libntfs-3g runs against a custom
``struct ntfs_device`` (include/ntfs-3g/device.h, ``ntfs_device_alloc`` + ``ntfs_device_mount``)
whose reads come from a callable (the real volume, read-only) and whose writes stay in memory;
after unmounting, ``VolumeOverlay.changes()`` lists the byte ranges libntfs-3g changed (volume
offset, old bytes, new bytes), for a journaled writer to apply. Nothing reaches the real volume.

Prototypes: ntfs-3g 2022.10.3, include/ntfs-3g/{volume,inode,dir,attrib,reparse,logging,device}.h.
Reparse buffers: [MS-FSCC] 2.1.2.1 (REPARSE_DATA_BUFFER), 2.1.2.4 (symbolic link),
2.1.2.5 (mount point), https://learn.microsoft.com/openspecs/windows_protocols/ms-fscc/
"""

from __future__ import annotations

import ctypes
import ctypes.util
import errno
import io
import os
import struct
import threading
import weakref
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import BinaryIO, Iterator

from offline_fix.errors import (
    CorruptInput,
    NotFound,
    OfflineFixError,
    PermissionDenied,
    Refused,
    Unsupported,
)

# --------------------------------------------------------------------------------------------
# Errors


class NtfsError(CorruptInput):
    """libntfs-3g could not read or write the volume: not NTFS, damaged, I/O error."""


class NtfsNotFound(NotFound):
    """A path does not exist on the volume."""


class NtfsExists(Refused):
    """Creating something that already exists (write_file without overwrite=True)."""


class NtfsNoSpace(Refused):
    """The volume (or its MFT) is full."""


class NtfsRefusedMount(Refused):
    """libntfs-3g refuses to write: Windows is hibernated, fast-started, or unclean."""


class NtfsPermission(PermissionDenied):
    """The operating system refused access to the volume file."""


class NtfsUnsupported(Unsupported):
    """A name NTFS cannot hold, a feature libntfs-3g lacks, or libntfs-3g is not installed."""


# --------------------------------------------------------------------------------------------
# Structures (only the leading fields we read; layouts from ntfs-3g's headers)

# struct _ntfs_inode, include/ntfs-3g/inode.h (prefix)
class _NtfsInode(ctypes.Structure):
    _fields_ = [
        ("mft_no", ctypes.c_uint64),  # 0x00 inode / MFT record number
        ("mrec", ctypes.c_void_p),  # 0x08 MFT_RECORD * (in memory)
        ("vol", ctypes.c_void_p),  # 0x10 ntfs_volume *
        ("state", ctypes.c_ulong),  # 0x18 NI_* state bits
        ("flags", ctypes.c_uint32),  # 0x20 FILE_ATTR_FLAGS (copy of $STANDARD_INFORMATION)
    ]


# struct _ntfs_attr, include/ntfs-3g/attrib.h (prefix)
class _NtfsAttr(ctypes.Structure):
    _fields_ = [
        ("rl", ctypes.c_void_p),  # 0x00 runlist_element *
        ("ni", ctypes.c_void_p),  # 0x08 ntfs_inode *
        ("type", ctypes.c_uint32),  # 0x10 ATTR_TYPES
        ("data_flags", ctypes.c_uint16),  # 0x14 ATTR_FLAGS
        ("name", ctypes.c_void_p),  # 0x18 ntfschar *
        ("name_len", ctypes.c_uint32),  # 0x20
        ("state", ctypes.c_ulong),  # 0x28
        ("allocated_size", ctypes.c_int64),  # 0x30
        ("data_size", ctypes.c_int64),  # 0x38
        ("initialized_size", ctypes.c_int64),  # 0x40
    ]


assert ctypes.sizeof(_NtfsInode) == 0x28 and _NtfsInode.flags.offset == 0x20
assert ctypes.sizeof(_NtfsAttr) == 0x48 and _NtfsAttr.data_size.offset == 0x38

# MFT_RECORD.flags (le16) at offset 0x16, include/ntfs-3g/layout.h
MFT_RECORD_FLAGS_OFFSET = 0x16
MFT_RECORD_IS_DIRECTORY = 0x0002

FILE_root = 5  # MFT record of the root directory
FILE_first_user = 16  # records below are NTFS metadata files ($MFT ... $Extend)
MREF_MASK = 0x0000FFFFFFFFFFFF  # MFT reference: low 48 bits record number, high 16 sequence
AT_DATA = 0x80
FILE_ATTR_REPARSE_POINT = 0x400
S_IFDIR = 0o040000
S_IFREG = 0o100000
NTFS_MNT_RDONLY = 0x00000001
NTFS_MNT_RECOVER = 0x10000000
NTFS_MNT_IGNORE_HIBERFILE = 0x20000000
FILE_NAME_DOS = 2  # name_type passed to the readdir callback; DOS 8.3 aliases are skipped
NTFS_DT_DIR = 4
NTFS_DT_LNK = 10
NTFS_DT_REPARSE = 32
MAX_NAME_UNITS = 255  # FILE_NAME.file_name_length is a u8 count of UTF-16 units
MAX_DEPTH = 256  # path components
MAX_DIR_ENTRIES = 1_000_000  # a directory listing larger than this is refused
CHUNK = 1 << 20

# [MS-FSCC] 2.1.2.1 REPARSE_DATA_BUFFER header: ReparseTag u32, ReparseDataLength u16, Reserved u16
REPARSE_HEADER = struct.Struct("<IHH")
# 2.1.2.5 mount point / 2.1.2.4 symlink: SubstituteNameOffset, SubstituteNameLength,
# PrintNameOffset, PrintNameLength (u16 each); the symlink adds Flags (u32)
MOUNT_POINT_BODY = struct.Struct("<HHHH")
SYMLINK_BODY = struct.Struct("<HHHHI")
assert REPARSE_HEADER.size == 8 and MOUNT_POINT_BODY.size == 8 and SYMLINK_BODY.size == 12
IO_REPARSE_TAG_MOUNT_POINT = 0xA0000003
IO_REPARSE_TAG_SYMLINK = 0xA000000C
SYMLINK_FLAG_RELATIVE = 0x00000001

# FILETIME: 100 ns ticks since 1601-01-01 UTC
_FILETIME_EPOCH_DELTA = 116444736000000000

# --------------------------------------------------------------------------------------------
# The library

_LIB_NAMES = ("libntfs-3g.so.89", "/usr/lib/x86_64-linux-gnu/libntfs-3g.so.89")
_lib = None
_lib_lock = threading.Lock()

_FILLDIR = ctypes.CFUNCTYPE(
    ctypes.c_int,
    ctypes.c_void_p,  # void *dirent
    ctypes.POINTER(ctypes.c_uint16),  # const ntfschar *name
    ctypes.c_int,  # name_len
    ctypes.c_int,  # name_type
    ctypes.c_int64,  # pos
    ctypes.c_uint64,  # MFT_REF mref
    ctypes.c_uint,  # dt_type
)

_INODE_VALUE_FLAGS = [ctypes.POINTER(_NtfsInode), ctypes.c_char_p, ctypes.c_size_t, ctypes.c_int]

_PROTOTYPES = {
    # name: (restype, argtypes)
    "ntfs_mount": (ctypes.c_void_p, [ctypes.c_char_p, ctypes.c_ulong]),
    "ntfs_umount": (ctypes.c_int, [ctypes.c_void_p, ctypes.c_int]),
    "ntfs_inode_open": (ctypes.POINTER(_NtfsInode), [ctypes.c_void_p, ctypes.c_uint64]),
    "ntfs_inode_close": (ctypes.c_int, [ctypes.POINTER(_NtfsInode)]),
    "ntfs_inode_lookup_by_name": (
        ctypes.c_uint64,
        [ctypes.POINTER(_NtfsInode), ctypes.c_char_p, ctypes.c_int],
    ),
    "ntfs_create": (
        ctypes.POINTER(_NtfsInode),
        [ctypes.POINTER(_NtfsInode), ctypes.c_uint32, ctypes.c_char_p, ctypes.c_uint8, ctypes.c_uint32],
    ),
    "ntfs_delete": (
        ctypes.c_int,
        [
            ctypes.c_void_p,
            ctypes.c_char_p,
            ctypes.POINTER(_NtfsInode),
            ctypes.POINTER(_NtfsInode),
            ctypes.c_char_p,
            ctypes.c_uint8,
        ],
    ),
    "ntfs_readdir": (
        ctypes.c_int,
        [ctypes.POINTER(_NtfsInode), ctypes.POINTER(ctypes.c_int64), ctypes.c_void_p, _FILLDIR],
    ),
    "ntfs_attr_open": (
        ctypes.POINTER(_NtfsAttr),
        [ctypes.POINTER(_NtfsInode), ctypes.c_uint32, ctypes.c_void_p, ctypes.c_uint32],
    ),
    "ntfs_attr_close": (None, [ctypes.POINTER(_NtfsAttr)]),
    "ntfs_attr_pread": (
        ctypes.c_int64,
        [ctypes.POINTER(_NtfsAttr), ctypes.c_int64, ctypes.c_int64, ctypes.c_void_p],
    ),
    "ntfs_attr_pwrite": (
        ctypes.c_int64,
        [ctypes.POINTER(_NtfsAttr), ctypes.c_int64, ctypes.c_int64, ctypes.c_char_p],
    ),
    "ntfs_attr_truncate": (ctypes.c_int, [ctypes.POINTER(_NtfsAttr), ctypes.c_int64]),
    # int f(ntfs_inode *ni, const char *value, size_t size, int flags)
    "ntfs_inode_set_times": (ctypes.c_int, _INODE_VALUE_FLAGS),
    "ntfs_set_ntfs_reparse_data": (ctypes.c_int, _INODE_VALUE_FLAGS),
    "ntfs_get_ntfs_reparse_data": (ctypes.c_int, _INODE_VALUE_FLAGS[:3]),
    "ntfs_log_set_handler": (None, [ctypes.c_void_p]),
    # struct ntfs_device *ntfs_device_alloc(const char *name, const long state,
    #                                       struct ntfs_device_operations *dops, void *priv_data)
    "ntfs_device_alloc": (ctypes.c_void_p, [ctypes.c_char_p, ctypes.c_long, ctypes.c_void_p, ctypes.c_void_p]),
    "ntfs_device_free": (ctypes.c_int, [ctypes.c_void_p]),
    "ntfs_device_mount": (ctypes.c_void_p, [ctypes.c_void_p, ctypes.c_ulong]),
}


def _load() -> ctypes.CDLL:
    """Load libntfs-3g once, declare the prototypes, silence its logging."""
    global _lib
    with _lib_lock:
        if _lib is not None:
            return _lib
        names = list(_LIB_NAMES)
        found = ctypes.util.find_library("ntfs-3g")
        if found:
            names.append(found)
        lib = None
        for name in names:
            try:
                lib = ctypes.CDLL(name, use_errno=True)
                break
            except OSError:
                continue
        if lib is None:
            raise NtfsUnsupported(
                "libntfs-3g is not installed (Debian package libntfs-3g89)", field="libntfs-3g.so.89"
            )
        for fname, (restype, argtypes) in _PROTOTYPES.items():
            try:
                func = getattr(lib, fname)
            except AttributeError:
                raise NtfsUnsupported(
                    "this libntfs-3g lacks a function offline-fix needs", field=fname
                ) from None
            func.restype = restype
            func.argtypes = argtypes
        # Messages would go to stderr; errno carries what we report instead.
        lib.ntfs_log_set_handler(ctypes.cast(lib.ntfs_log_handler_null, ctypes.c_void_p))
        _lib = lib
        return lib


# --------------------------------------------------------------------------------------------
# Helpers


def _errno_error(what: str, *, path: str | None = None, during_mount: bool = False) -> OfflineFixError:
    """Turn the errno libntfs-3g left behind into a typed error."""
    code = ctypes.get_errno()
    text = os.strerror(code) if code else "unknown error"
    message = f"{what}: {text} (errno {errno.errorcode.get(code, code)})"
    if during_mount and code == errno.EINVAL:
        return NtfsError(message + "; not an NTFS volume, or its boot sector is damaged", path=path)
    if during_mount and code == errno.EPERM:
        return NtfsRefusedMount(
            message + "; Windows is hibernated or fast-started, or the volume was not shut down "
            "cleanly, and libntfs-3g refuses to write it",
            path=path,
        )
    if code == errno.ENOENT:
        return NtfsNotFound(message, path=path)
    if code == errno.EEXIST:
        return NtfsExists(message, path=path)
    if code in (errno.ENOSPC, errno.EFBIG):
        return NtfsNoSpace(message, path=path)
    if code in (errno.EACCES, errno.EROFS) or (code == errno.EPERM and not during_mount):
        return NtfsPermission(message, path=path)
    if code in (errno.EBUSY, errno.ETXTBSY):
        return Refused(message, path=path)
    if code in (errno.EOPNOTSUPP, errno.ENOSYS, errno.ENAMETOOLONG):
        return NtfsUnsupported(message, path=path)
    return NtfsError(message, path=path)


def split_path(path: str) -> list[str]:
    """Split a Windows path (``\\`` or ``/``) into checked components; "" is the root."""
    if not isinstance(path, str):
        raise NtfsUnsupported("an NTFS path must be text", found=type(path).__name__)
    parts = [p for p in path.replace("\\", "/").split("/") if p != ""]
    if len(parts) > MAX_DEPTH:
        raise NtfsUnsupported("path too deep", path=path, expected=f"<= {MAX_DEPTH}", found=len(parts))
    for part in parts:
        if part in (".", ".."):
            raise NtfsUnsupported("'.' and '..' are not allowed in a volume path", path=path)
        if "\x00" in part:
            raise NtfsUnsupported("NUL in a file name", path=path)
        units = len(_utf16(part)) // 2
        if units > MAX_NAME_UNITS:
            raise NtfsUnsupported(
                "file name too long for NTFS", path=path, expected=f"<= {MAX_NAME_UNITS}", found=units
            )
    return parts


def _utf16(name: str) -> bytes:
    try:
        return name.encode("utf-16-le", "surrogatepass")
    except UnicodeEncodeError as exc:
        raise NtfsUnsupported("name cannot be encoded as UTF-16", found=repr(name)) from exc


def to_filetime(value: datetime | int) -> int:
    """A datetime (naive = UTC) or a FILETIME integer -> FILETIME integer."""
    if isinstance(value, int) and not isinstance(value, bool):
        if not 0 <= value < 1 << 63:
            raise NtfsUnsupported("FILETIME out of range", found=value)
        return value
    if not isinstance(value, datetime):
        raise NtfsUnsupported("a time is a datetime or a FILETIME integer", found=type(value).__name__)
    if value.tzinfo is None:
        value = value.replace(tzinfo=timezone.utc)
    delta = value - datetime(1970, 1, 1, tzinfo=timezone.utc)
    ticks = (delta.days * 86400 + delta.seconds) * 10_000_000 + delta.microseconds * 10 + _FILETIME_EPOCH_DELTA
    if ticks < 0:
        raise NtfsUnsupported("time before 1601", found=value.isoformat())
    return ticks


def _join(parts: list[str]) -> str:
    return "\\".join(parts)


@dataclass(frozen=True)
class DirEntry:
    """One name in a directory listing (DOS 8.3 aliases are left out)."""

    name: str
    mft_record: int
    is_dir: bool
    is_reparse: bool

    def to_dict(self) -> dict:
        return {"name": self.name, "mft_record": self.mft_record, "is_dir": self.is_dir, "is_reparse": self.is_reparse}


@dataclass(frozen=True)
class Stat:
    mft_record: int
    is_dir: bool
    is_reparse: bool
    size: int  # unnamed $DATA size; 0 for a directory
    attributes: int  # FILE_ATTR_* flags from $STANDARD_INFORMATION


# --------------------------------------------------------------------------------------------
# Overlay: libntfs-3g on an in-memory copy-on-write view of a volume

# struct ntfs_device, include/ntfs-3g/device.h
class _NtfsDevice(ctypes.Structure):
    _fields_ = [
        ("d_ops", ctypes.c_void_p),  # 0x00 struct ntfs_device_operations *
        ("d_state", ctypes.c_ulong),  # 0x08 ND_* bits
        ("d_name", ctypes.c_char_p),  # 0x10
        ("d_private", ctypes.c_void_p),  # 0x18
        ("d_heads", ctypes.c_int),  # 0x20
        ("d_sectors_per_track", ctypes.c_int),  # 0x24
    ]


_DEV = ctypes.POINTER(_NtfsDevice)
_OPS_FIELDS = (  # struct ntfs_device_operations, in declaration order
    ("open", ctypes.CFUNCTYPE(ctypes.c_int, _DEV, ctypes.c_int, use_errno=True)),
    ("close", ctypes.CFUNCTYPE(ctypes.c_int, _DEV, use_errno=True)),
    ("seek", ctypes.CFUNCTYPE(ctypes.c_int64, _DEV, ctypes.c_int64, ctypes.c_int, use_errno=True)),
    ("read", ctypes.CFUNCTYPE(ctypes.c_int64, _DEV, ctypes.c_void_p, ctypes.c_int64, use_errno=True)),
    ("write", ctypes.CFUNCTYPE(ctypes.c_int64, _DEV, ctypes.c_void_p, ctypes.c_int64, use_errno=True)),
    ("pread", ctypes.CFUNCTYPE(ctypes.c_int64, _DEV, ctypes.c_void_p, ctypes.c_int64, ctypes.c_int64, use_errno=True)),
    ("pwrite", ctypes.CFUNCTYPE(ctypes.c_int64, _DEV, ctypes.c_void_p, ctypes.c_int64, ctypes.c_int64, use_errno=True)),
    ("sync", ctypes.CFUNCTYPE(ctypes.c_int, _DEV, use_errno=True)),
    ("stat", ctypes.CFUNCTYPE(ctypes.c_int, _DEV, ctypes.c_void_p, use_errno=True)),
    ("ioctl", ctypes.CFUNCTYPE(ctypes.c_int, _DEV, ctypes.c_ulong, ctypes.c_void_p, use_errno=True)),
)


class _NtfsDeviceOperations(ctypes.Structure):
    _fields_ = list(_OPS_FIELDS)


assert _NtfsDevice.d_private.offset == 0x18 and ctypes.sizeof(_NtfsDevice) == 0x28
assert ctypes.sizeof(_NtfsDeviceOperations) == 10 * ctypes.sizeof(ctypes.c_void_p)

ND_OPEN, ND_READONLY, ND_DIRTY = 0, 1, 2  # enum ntfs_device_state_bits
O_ACCMODE = 0o3
# struct stat (x86_64 and the generic layout of aarch64): offsets of st_mode, st_size, st_blksize
_STAT_LAYOUT = {"x86_64": (144, 24, "I", 48, 56, "q"), "aarch64": (128, 16, "I", 48, 56, "i")}


class VolumeOverlay:
    """Copy-on-write view of a volume: reads come from ``read(offset, length)`` (which must return
    exactly ``length`` bytes or raise), writes stay in a dict of BLOCK-byte blocks in memory.

    ``changes()`` lists what differs from the original, as (offset, old, new) runs. The first
    error met inside a libntfs-3g callback (a truncated image, say) is kept in ``error`` and
    re-raised by ``check()`` and ``changes()``: an overlay that saw a failed read yields nothing.
    """

    BLOCK = 4096

    def __init__(self, read, size: int, *, name: str = "overlay") -> None:
        if size <= 0:
            raise NtfsUnsupported("an overlay needs a volume size", found=size)
        self._read = read
        self.size = size
        self.name = name
        self.blocks: dict[int, bytearray] = {}
        self.error: BaseException | None = None
        self.reads = self.writes = 0

    def _original(self, offset: int, length: int) -> bytes:
        data = self._read(offset, length)
        if len(data) != length:
            raise NtfsError("short read from the volume", path=self.name, offset=offset,
                            expected=length, found=len(data))
        return data

    def _block_len(self, index: int) -> int:
        return min(self.BLOCK, self.size - index * self.BLOCK)

    def pread(self, offset: int, length: int) -> bytes:
        """Up to ``length`` bytes at ``offset`` (fewer at the end of the volume), as written."""
        end = min(offset + length, self.size)
        if offset < 0 or length < 0:
            raise NtfsError("negative offset or length", path=self.name, offset=offset, found=length)
        if offset >= end:
            return b""
        self.reads += 1
        B = self.BLOCK
        first, last = offset // B, (end - 1) // B
        blocks = self.blocks
        if not blocks or not any(i in blocks for i in range(first, last + 1)):
            return self._original(offset, end - offset)
        out = bytearray()
        i = first
        while i <= last:  # every step advances i
            lo = max(offset, i * B)
            if i in blocks:
                out += blocks[i][lo - i * B:min(end, (i + 1) * B) - i * B]
                i += 1
                continue
            j = i
            while j + 1 <= last and (j + 1) not in blocks:
                j += 1
            out += self._original(lo, min(end, (j + 1) * B) - lo)
            i = j + 1
        return bytes(out)

    def pwrite(self, offset: int, data: bytes) -> int:
        if offset < 0 or offset + len(data) > self.size:
            raise NtfsError("write outside the volume", path=self.name, offset=offset,
                            expected=f"end <= {self.size}", found=offset + len(data))
        self.writes += 1
        B = self.BLOCK
        pos = 0
        while pos < len(data):  # every step advances pos by at least one byte
            at = offset + pos
            i = at // B
            block = self.blocks.get(i)
            if block is None:
                block = self.blocks[i] = bytearray(self._original(i * B, self._block_len(i)))
            start = at - i * B
            n = min(len(data) - pos, len(block) - start)
            block[start:start + n] = data[pos:pos + n]
            pos += n
        return len(data)

    def check(self) -> None:
        """Raise the first error a libntfs-3g callback met, if any."""
        if self.error is not None:
            raise self.error

    def changes(self) -> list[tuple[int, bytes, bytes]]:
        """(volume offset, old bytes, new bytes) for every run of changed bytes, in order."""
        self.check()
        B = self.BLOCK
        runs: list[tuple[int, bytearray, bytearray]] = []
        for i in sorted(self.blocks):
            new = self.blocks[i]
            old = self._original(i * B, len(new))
            if old == new:
                continue
            if runs and runs[-1][0] + len(runs[-1][1]) == i * B:
                runs[-1][1].extend(old)
                runs[-1][2].extend(new)
            else:
                runs.append((i * B, bytearray(old), bytearray(new)))
        out = []
        for start, old, new in runs:
            lo, hi = 0, len(old)
            while old[lo] == new[lo]:  # the run differs somewhere, so both loops stop
                lo += 1
            while old[hi - 1] == new[hi - 1]:
                hi -= 1
            out.append((start + lo, bytes(old[lo:hi]), bytes(new[lo:hi])))
        return out


def _device_operations(overlay: VolumeOverlay) -> tuple[_NtfsDeviceOperations, list]:
    """The ntfs_device_operations of an overlay, and the ctypes callbacks to keep alive."""
    position = [0]

    def guarded(fail):
        def wrap(fn):
            def call(*args):
                try:
                    return fn(*args)
                except BaseException as exc:  # kept, re-raised by check(); C gets EIO
                    if overlay.error is None:
                        overlay.error = exc
                    ctypes.set_errno(errno.EIO)
                    return fail
            return call
        return wrap

    def set_bit(dev, bit: int, on: bool) -> None:
        if on:
            dev.contents.d_state |= 1 << bit
        else:
            dev.contents.d_state &= ~(1 << bit)

    def dev_open(dev, flags):
        if dev.contents.d_state & (1 << ND_OPEN):
            ctypes.set_errno(errno.EBUSY)
            return -1
        set_bit(dev, ND_READONLY, (flags & O_ACCMODE) == os.O_RDONLY)
        set_bit(dev, ND_OPEN, True)
        return 0

    def dev_close(dev):
        set_bit(dev, ND_OPEN, False)
        return 0

    def dev_seek(dev, offset, whence):
        base = {os.SEEK_SET: 0, os.SEEK_CUR: position[0], os.SEEK_END: overlay.size}.get(whence)
        if base is None or base + offset < 0:
            ctypes.set_errno(errno.EINVAL)
            return -1
        position[0] = base + offset
        return position[0]

    def dev_pread(dev, buf, count, offset):
        data = overlay.pread(offset, count)
        ctypes.memmove(buf, data, len(data))
        return len(data)

    def dev_pwrite(dev, buf, count, offset):
        if dev.contents.d_state & (1 << ND_READONLY):
            ctypes.set_errno(errno.EROFS)
            return -1
        set_bit(dev, ND_DIRTY, True)
        return overlay.pwrite(offset, ctypes.string_at(buf, count))

    def dev_read(dev, buf, count):
        n = dev_pread(dev, buf, count, position[0])
        position[0] += n
        return n

    def dev_write(dev, buf, count):
        n = dev_pwrite(dev, buf, count, position[0])
        if n > 0:
            position[0] += n
        return n

    def dev_sync(dev):
        set_bit(dev, ND_DIRTY, False)
        return 0

    def dev_stat(dev, buf):
        import platform as _platform

        layout = _STAT_LAYOUT.get(_platform.machine())
        if layout is None:
            ctypes.set_errno(errno.ENOSYS)
            return -1
        total, mode_at, mode_fmt, size_at, blksize_at, blksize_fmt = layout
        raw = bytearray(total)
        struct.pack_into("<" + mode_fmt, raw, mode_at, S_IFREG | 0o600)
        struct.pack_into("<q", raw, size_at, overlay.size)
        struct.pack_into("<" + blksize_fmt, raw, blksize_at, overlay.BLOCK)
        ctypes.memmove(buf, bytes(raw), total)
        return 0

    def dev_ioctl(dev, request, argp):
        ctypes.set_errno(errno.ENOTTY)
        return -1

    impl = {"open": (dev_open, -1), "close": (dev_close, -1), "seek": (dev_seek, -1), "read": (dev_read, -1),
            "write": (dev_write, -1), "pread": (dev_pread, -1), "pwrite": (dev_pwrite, -1),
            "sync": (dev_sync, -1), "stat": (dev_stat, -1), "ioctl": (dev_ioctl, -1)}
    callbacks = [ftype(guarded(impl[name][1])(impl[name][0])) for name, ftype in _OPS_FIELDS]
    return _NtfsDeviceOperations(*callbacks), callbacks


def _mount_overlay(lib: ctypes.CDLL, overlay: VolumeOverlay, flags: int) -> tuple[int, tuple]:
    """Mount an overlay; return the ntfs_volume pointer and what must outlive it."""
    ops, callbacks = _device_operations(overlay)
    ctypes.set_errno(0)
    dev = lib.ntfs_device_alloc(os.fsencode(overlay.name), 0, ctypes.addressof(ops), None)
    if not dev:
        raise _errno_error("cannot allocate an NTFS device", path=overlay.name)
    ctypes.set_errno(0)
    vol = lib.ntfs_device_mount(dev, flags)
    if not vol:
        error = _errno_error("cannot open NTFS volume", path=overlay.name, during_mount=True)
        lib.ntfs_device_free(dev)  # the mount closed it; a failure here only leaks the struct
        overlay.check()
        raise error
    return vol, (ops, callbacks, overlay)


# --------------------------------------------------------------------------------------------
# The volume


def _umount(lib: ctypes.CDLL, vol: int, *_keep_alive) -> int:
    """Unmount (libntfs-3g closes and frees the device too); ``_keep_alive`` holds an overlay's
    callbacks until then."""
    return lib.ntfs_umount(vol, 0)


class NtfsVolume:
    """An NTFS volume held in a file, opened through libntfs-3g.

    Use as a context manager; ``close()`` unmounts and reports a failed unmount as NtfsError.
    """

    def __init__(
        self,
        path: str | os.PathLike | None = None,
        *,
        overlay: VolumeOverlay | None = None,
        readonly: bool = False,
        ignore_hibernation: bool = False,
        recover: bool = False,
        case_sensitive: bool = False,
    ) -> None:
        if (path is None) == (overlay is None):
            raise NtfsUnsupported("give either a volume file or an overlay")
        self.path = overlay.name if overlay is not None else os.fspath(path)
        self.readonly = readonly
        self.case_sensitive = case_sensitive
        self.overlay = overlay
        self._folded: dict[int, dict[str, int]] = {}  # dir MFT record -> {fold(name): record}
        self._lib = _load()
        flags = 0
        if readonly:
            flags |= NTFS_MNT_RDONLY
        if ignore_hibernation:
            flags |= NTFS_MNT_IGNORE_HIBERFILE
        if recover:
            flags |= NTFS_MNT_RECOVER
        keep: tuple = ()
        if overlay is not None:
            vol, keep = _mount_overlay(self._lib, overlay, flags)
        else:
            if not os.path.exists(self.path):
                raise NtfsNotFound("volume file does not exist", path=self.path)
            if not os.path.isfile(self.path):
                raise NtfsUnsupported("only a volume held in a regular file is supported here", path=self.path)
            ctypes.set_errno(0)
            vol = self._lib.ntfs_mount(os.fsencode(self.path), flags)
            if not vol:
                raise _errno_error("cannot open NTFS volume", path=self.path, during_mount=True)
        self._vol = vol
        self._finalizer = weakref.finalize(self, _umount, self._lib, vol, *keep)

    # context manager ---------------------------------------------------------------------
    def __enter__(self) -> NtfsVolume:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
        else:  # keep the first error; still unmount
            self._finalizer()

    def close(self) -> None:
        if not self._finalizer.alive:
            return
        ctypes.set_errno(0)
        rc = self._finalizer()
        if self.overlay is not None:
            self.overlay.check()  # a failed read during the session, reported as itself
        if rc != 0:
            raise _errno_error("unmounting the NTFS volume failed", path=self.path)

    @property
    def closed(self) -> bool:
        return not self._finalizer.alive

    # inode plumbing ----------------------------------------------------------------------
    def _check_open(self) -> None:
        if self.closed:
            raise Refused("the NTFS volume is closed", path=self.path)

    def _open_record(self, mref: int, where: str):
        ctypes.set_errno(0)
        ni = self._lib.ntfs_inode_open(self._vol, mref)
        if not ni:
            raise _errno_error("cannot open MFT record", path=where)
        return ni

    def _close_inode(self, ni, where: str) -> None:
        ctypes.set_errno(0)
        if self._lib.ntfs_inode_close(ni) != 0:
            raise _errno_error("closing an inode failed (metadata write)", path=where)

    def _lookup(self, dir_ni, name: str, where: str) -> int | None:
        """MFT reference of NAME in the directory DIR_NI, or None if absent."""
        uname = _utf16(name)
        ctypes.set_errno(0)
        mref = self._lib.ntfs_inode_lookup_by_name(dir_ni, uname, len(uname) // 2)
        if mref != 0xFFFFFFFFFFFFFFFF:
            return mref & MREF_MASK
        if ctypes.get_errno() not in (errno.ENOENT, 0):
            raise _errno_error("directory lookup failed", path=where)
        if self.case_sensitive:
            return None
        return self._folded_names(dir_ni, where).get(_fold(name))

    def _folded_names(self, dir_ni, where: str) -> dict[str, int]:
        record = dir_ni.contents.mft_no
        table = self._folded.get(record)
        if table is None:
            table = {}
            for entry in self._readdir(dir_ni, where, include_system=True):
                table.setdefault(_fold(entry.name), entry.mft_record)
            self._folded[record] = table
        return table

    def _walk(self, parts: list[str], where: str):
        """Open the inode at PARTS (a list of names from the root); caller closes it."""
        ni = self._open_record(FILE_root, where)
        for i, name in enumerate(parts):
            try:
                if not _is_dir(ni):
                    raise NtfsNotFound("not a directory", path=_join(parts[:i]) or "\\")
                mref = self._lookup(ni, name, where)
                if mref is None:
                    raise NtfsNotFound("no such file or directory", path=_join(parts[: i + 1]))
            except BaseException:
                self._close_inode(ni, where)
                raise
            self._close_inode(ni, where)
            ni = self._open_record(mref, where)
        return ni

    def _create(self, dir_ni, name: str, mode: int, where: str):
        uname = _utf16(name)
        ctypes.set_errno(0)
        ni = self._lib.ntfs_create(dir_ni, 0, uname, len(uname) // 2, mode)
        if not ni:
            raise _errno_error("cannot create", path=where)
        table = self._folded.get(dir_ni.contents.mft_no)
        if table is not None:
            table.setdefault(_fold(name), ni.contents.mft_no)
        return ni

    def _ensure_dirs(self, parts: list[str], where: str):
        """mkdir -p PARTS; return the open inode of the last directory (caller closes it)."""
        ni = self._open_record(FILE_root, where)
        for i, name in enumerate(parts):
            sub = _join(parts[: i + 1])
            try:
                if not _is_dir(ni):
                    raise NtfsExists("a file is in the way of a directory", path=_join(parts[:i]))
                mref = self._lookup(ni, name, sub)
                child = self._open_record(mref, sub) if mref is not None else self._create(ni, name, S_IFDIR, sub)
            except BaseException:
                self._close_inode(ni, where)
                raise
            self._close_inode(ni, where)
            ni = child
        if not _is_dir(ni):
            self._close_inode(ni, where)
            raise NtfsExists("a file is in the way of a directory", path=where)
        return ni

    def _with_data(self, ni, where: str):
        ctypes.set_errno(0)
        na = self._lib.ntfs_attr_open(ni, AT_DATA, ctypes.addressof(_at_unnamed(self._lib)), 0)
        if not na:
            raise _errno_error("cannot open the $DATA attribute", path=where)
        return na

    def _write_data(self, na, data: bytes | BinaryIO, where: str) -> int:
        """Write DATA from offset 0 and truncate to its length; return the length."""
        pos = 0
        for chunk in _chunks(data):
            done = 0
            while done < len(chunk):
                piece = chunk[done:]
                ctypes.set_errno(0)
                n = self._lib.ntfs_attr_pwrite(na, pos, len(piece), piece)
                if n <= 0:
                    raise _errno_error(f"write failed at offset {pos}", path=where)
                done += n
                pos += n
        ctypes.set_errno(0)
        if na.contents.data_size != pos and self._lib.ntfs_attr_truncate(na, pos) != 0:
            raise _errno_error(f"cannot set the file size to {pos}", path=where)
        return pos

    # public API --------------------------------------------------------------------------
    def mkdir(self, path: str, *, times: tuple | None = None) -> None:
        """Create directory PATH and its missing parents (like ``mkdir -p``)."""
        self._check_open()
        self._check_writable(path)
        parts = split_path(path)
        ni = self._ensure_dirs(parts, path)
        try:
            if times is not None:
                self._set_times(ni, times, path)
        finally:
            self._close_inode(ni, path)

    def write_file(
        self,
        path: str,
        data: bytes | bytearray | memoryview | BinaryIO,
        *,
        overwrite: bool = False,
        parents: bool = True,
        times: tuple | None = None,
    ) -> int:
        """Create file PATH holding DATA (bytes, or a binary stream read to its end).

        An existing file is refused unless ``overwrite=True``, which replaces its bytes.
        ``times`` is (creation, last write, last access) as datetimes or FILETIME integers.
        Returns the number of bytes written.
        """
        self._check_open()
        self._check_writable(path)
        parts = split_path(path)
        if not parts:
            raise NtfsExists("cannot write to the root directory", path=path)
        if parents:
            dir_ni = self._ensure_dirs(parts[:-1], path)
        else:
            dir_ni = self._walk(parts[:-1], path)
        try:
            mref = self._lookup(dir_ni, parts[-1], path)
            if mref is not None:
                if not overwrite:
                    raise NtfsExists("file exists", path=path)
                ni = self._open_record(mref, path)
                if _is_dir(ni):
                    self._close_inode(ni, path)
                    raise NtfsExists("a directory is in the way of a file", path=path)
            else:
                ni = self._create(dir_ni, parts[-1], S_IFREG, path)
        finally:
            self._close_inode(dir_ni, path)
        try:
            na = self._with_data(ni, path)
            try:
                written = self._write_data(na, data, path)
            finally:
                self._lib.ntfs_attr_close(na)
            if times is not None:
                self._set_times(ni, times, path)
        finally:
            self._close_inode(ni, path)
        return written

    def overwrite(self, path: str, data: bytes | BinaryIO) -> int:
        """Replace the bytes of the existing file PATH."""
        self.stat(path)  # NotFound when absent
        return self.write_file(path, data, overwrite=True, parents=False)

    def read_file(self, path: str, *, max_size: int = 1 << 31) -> bytes:
        """The bytes of file PATH (its unnamed $DATA stream); refuses files above MAX_SIZE."""
        out = io.BytesIO()
        for chunk in self.iter_file(path, max_size=max_size):
            out.write(chunk)
        return out.getvalue()

    def iter_file(self, path: str, *, max_size: int = 1 << 62, chunk: int = CHUNK) -> Iterator[bytes]:
        """The bytes of file PATH in chunks."""
        self._check_open()
        ni = self._walk(split_path(path), path)
        try:
            if _is_dir(ni):
                raise NtfsUnsupported("is a directory", path=path)
            na = self._with_data(ni, path)
            try:
                size = na.contents.data_size
                if size < 0 or size > max_size:
                    raise NtfsUnsupported("file larger than allowed", path=path, expected=f"<= {max_size}", found=size)
                buf = ctypes.create_string_buffer(min(chunk, max(size, 1)))
                pos = 0
                while pos < size:
                    want = min(len(buf), size - pos)
                    ctypes.set_errno(0)
                    n = self._lib.ntfs_attr_pread(na, pos, want, buf)
                    if n != want:
                        err = _errno_error("read failed", path=path)
                        err.offset, err.field, err.expected, err.found = pos, "$DATA", want, n
                        raise err
                    yield buf.raw[:n]
                    pos += n
            finally:
                self._lib.ntfs_attr_close(na)
        finally:
            self._close_inode(ni, path)

    def stat(self, path: str) -> Stat:
        self._check_open()
        ni = self._walk(split_path(path), path)
        try:
            is_dir = _is_dir(ni)
            size = 0
            if not is_dir:
                na = self._with_data(ni, path)
                size = na.contents.data_size
                self._lib.ntfs_attr_close(na)
            flags = ni.contents.flags
            return Stat(
                mft_record=ni.contents.mft_no,
                is_dir=is_dir,
                is_reparse=bool(flags & FILE_ATTR_REPARSE_POINT),
                size=size,
                attributes=flags,
            )
        finally:
            self._close_inode(ni, path)

    def exists(self, path: str) -> bool:
        try:
            self.stat(path)
        except NtfsNotFound:
            return False
        return True

    def listdir(self, path: str = "", *, include_system: bool = False) -> list[DirEntry]:
        """Entries of directory PATH (no '.', '..', DOS aliases, nor, unless asked, the NTFS
        metadata files such as $MFT), in index (collation) order."""
        self._check_open()
        ni = self._walk(split_path(path), path)
        try:
            return self._readdir(ni, path, include_system=include_system)
        finally:
            self._close_inode(ni, path)

    def _readdir(self, ni, where: str, *, include_system: bool) -> list[DirEntry]:
        entries: list[DirEntry] = []
        overflow = []

        def filldir(_dirent, name, name_len, name_type, _pos, mref, dt_type):
            if len(entries) >= MAX_DIR_ENTRIES:
                overflow.append(True)
                return 1
            if name_type == FILE_NAME_DOS:
                return 0
            text = ctypes.string_at(name, name_len * 2).decode("utf-16-le", "surrogatepass")
            record = mref & MREF_MASK
            if text in (".", "..") or (record < FILE_first_user and not include_system):
                return 0
            entries.append(
                DirEntry(text, record, dt_type == NTFS_DT_DIR, dt_type in (NTFS_DT_REPARSE, NTFS_DT_LNK))
            )
            return 0

        if not _is_dir(ni):
            raise NtfsUnsupported("not a directory", path=where)
        callback = _FILLDIR(filldir)
        pos = ctypes.c_int64(0)
        ctypes.set_errno(0)
        rc = self._lib.ntfs_readdir(ni, ctypes.byref(pos), None, callback)
        if overflow:
            raise NtfsUnsupported("directory too large", path=where, expected=f"<= {MAX_DIR_ENTRIES}")
        if rc != 0:
            raise _errno_error("cannot read the directory", path=where)
        return entries

    def walk(self, path: str = "") -> Iterator[tuple[str, list[DirEntry]]]:
        """Depth-first (dir path, entries) pairs below PATH; reparse points are not entered."""
        stack = [_join(split_path(path))]
        seen: set[int] = set()
        while stack:
            current = stack.pop()
            entries = self.listdir(current)
            yield current, entries
            for entry in reversed(entries):
                if entry.is_dir and not entry.is_reparse and entry.mft_record not in seen:
                    seen.add(entry.mft_record)
                    stack.append(f"{current}\\{entry.name}" if current else entry.name)

    def remove(self, path: str) -> None:
        """Delete file PATH, or directory PATH when it is empty."""
        self._check_open()
        self._check_writable(path)
        parts = split_path(path)
        if not parts:
            raise Refused("cannot delete the root directory", path=path)
        dir_ni = self._walk(parts[:-1], path)
        try:
            mref = self._lookup(dir_ni, parts[-1], path)
            if mref is None:
                raise NtfsNotFound("no such file or directory", path=path)
            ni = self._open_record(mref, path)
            uname = _utf16(parts[-1])
            ctypes.set_errno(0)
            # ntfs_delete closes ni in every case; dir_ni stays ours.
            rc = self._lib.ntfs_delete(self._vol, None, ni, dir_ni, uname, len(uname) // 2)
            self._folded.pop(dir_ni.contents.mft_no, None)
            if rc != 0:
                raise _errno_error("cannot delete", path=path)
        finally:
            self._close_inode(dir_ni, path)

    def set_times(self, path: str, creation, last_write=None, last_access=None) -> None:
        """Set $STANDARD_INFORMATION and $FILE_NAME times (libntfs-3g stamps the MFT change
        time itself)."""
        self._check_open()
        self._check_writable(path)
        ni = self._walk(split_path(path), path)
        try:
            self._set_times(ni, (creation, last_write, last_access), path)
        finally:
            self._close_inode(ni, path)

    def _set_times(self, ni, times: tuple, where: str) -> None:
        given = list(times)
        while given and given[-1] is None:
            given.pop()
        if not 1 <= len(given) <= 3 or any(t is None for t in given):
            raise NtfsUnsupported("times are (creation[, last write[, last access]])", path=where, found=times)
        buf = struct.pack(f"<{len(given)}Q", *(to_filetime(t) for t in given))
        ctypes.set_errno(0)
        if self._lib.ntfs_inode_set_times(ni, buf, len(buf), 0) != 0:
            raise _errno_error("cannot set times", path=where)

    # reparse points ----------------------------------------------------------------------
    def create_junction(self, path: str, target: str) -> None:
        """Create directory PATH as a junction (mount point reparse point) to TARGET, an
        absolute Windows path such as ``C:\\Windows``."""
        subst = _utf16(_nt_path(target))
        printed = _utf16(target)
        buffer = subst + b"\x00\x00" + printed + b"\x00\x00"
        body = MOUNT_POINT_BODY.pack(0, len(subst), len(subst) + 2, len(printed)) + buffer
        self._make_reparse(path, IO_REPARSE_TAG_MOUNT_POINT, body, directory=True)

    def create_symlink(self, path: str, target: str, *, directory: bool = False) -> None:
        """Create PATH as an NTFS symbolic link (reparse point) to TARGET. A TARGET without a
        drive or a leading backslash is stored as relative, as mklink does."""
        relative = not (len(target) >= 2 and target[1] == ":") and not target.startswith("\\")
        subst = _utf16(target if relative else _nt_path(target))
        printed = _utf16(target)
        body = SYMLINK_BODY.pack(
            0, len(subst), len(subst), len(printed), SYMLINK_FLAG_RELATIVE if relative else 0
        ) + subst + printed
        self._make_reparse(path, IO_REPARSE_TAG_SYMLINK, body, directory=directory)

    def read_reparse(self, path: str) -> tuple[int, bytes]:
        """(tag, reparse data after the 8-byte header) of PATH."""
        self._check_open()
        ni = self._walk(split_path(path), path)
        try:
            buf = ctypes.create_string_buffer(16 * 1024)  # MAXIMUM_REPARSE_DATA_BUFFER_SIZE
            ctypes.set_errno(0)
            n = self._lib.ntfs_get_ntfs_reparse_data(ni, buf, len(buf))
            if n < 0:
                raise _errno_error("cannot read reparse data", path=path)
            if n < REPARSE_HEADER.size or n > len(buf):
                raise NtfsError("reparse data too short", path=path, field="REPARSE_DATA_BUFFER", found=n)
            tag, length, _ = REPARSE_HEADER.unpack_from(buf.raw)
            if REPARSE_HEADER.size + length > n:
                raise NtfsError(
                    "reparse data shorter than its header says",
                    path=path,
                    field="ReparseDataLength",
                    expected=length,
                    found=n - REPARSE_HEADER.size,
                )
            return tag, buf.raw[REPARSE_HEADER.size : REPARSE_HEADER.size + length]
        finally:
            self._close_inode(ni, path)

    def _make_reparse(self, path: str, tag: int, body: bytes, *, directory: bool) -> None:
        self._check_open()
        self._check_writable(path)
        if len(body) > 0xFFFF - REPARSE_HEADER.size:
            raise NtfsUnsupported("reparse target too long", path=path)
        parts = split_path(path)
        if not parts:
            raise NtfsExists("the root directory cannot be a reparse point", path=path)
        dir_ni = self._ensure_dirs(parts[:-1], path)
        try:
            if self._lookup(dir_ni, parts[-1], path) is not None:
                raise NtfsExists("file exists", path=path)
            ni = self._create(dir_ni, parts[-1], S_IFDIR if directory else S_IFREG, path)
        finally:
            self._close_inode(dir_ni, path)
        value = REPARSE_HEADER.pack(tag, len(body), 0) + body
        try:
            ctypes.set_errno(0)
            if self._lib.ntfs_set_ntfs_reparse_data(ni, value, len(value), 0) != 0:
                raise _errno_error("cannot set reparse data", path=path)
        finally:
            self._close_inode(ni, path)

    def _check_writable(self, path: str) -> None:
        if self.readonly:
            raise Refused("the NTFS volume is open read-only", path=path)


def _fold(name: str) -> str:
    """Upper-case one character at a time (NTFS's $UpCase maps UTF-16 units one to one)."""
    return "".join(u if len(u := c.upper()) == 1 else c for c in name)


def _nt_path(target: str) -> str:
    """C:\\x -> \\??\\C:\\x (the substitute name form Windows stores)."""
    if target.startswith("\\??\\"):
        return target
    return "\\??\\" + target


def _is_dir(ni) -> bool:
    mrec = ni.contents.mrec
    if not mrec:
        raise NtfsError("inode has no MFT record in memory", field="ntfs_inode.mrec")
    flags = ctypes.c_uint16.from_address(mrec + MFT_RECORD_FLAGS_OFFSET).value
    return bool(flags & MFT_RECORD_IS_DIRECTORY)


_unnamed = None


def _at_unnamed(lib):
    """libntfs-3g's AT_UNNAMED (the empty attribute name) as a ctypes object."""
    global _unnamed
    if _unnamed is None:
        _unnamed = ctypes.c_uint16.in_dll(lib, "AT_UNNAMED")
    return _unnamed


def _chunks(data) -> Iterator[bytes]:
    if isinstance(data, (bytes, bytearray, memoryview)):
        view = memoryview(data).cast("B")
        for start in range(0, len(view), CHUNK):
            yield bytes(view[start : start + CHUNK])
        return
    read = getattr(data, "read", None)
    if read is None:
        raise NtfsUnsupported("data must be bytes or a binary stream", found=type(data).__name__)
    while True:
        chunk = read(CHUNK)
        if not chunk:
            return
        if not isinstance(chunk, (bytes, bytearray)):
            raise NtfsUnsupported("stream must yield bytes", found=type(chunk).__name__)
        yield bytes(chunk)
