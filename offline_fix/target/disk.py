"""Open whatever TARGET names as a disk: a raw image or block device, VHD, VHDX (our readers,
which also map offsets for in-place writes), or read-only whatever dissect opens (qcow2, VMDK,
E01, VDI). Everything above this module sees ``Disk.read(offset, length)``.
"""

from __future__ import annotations

import errno
import io
import os

from offline_fix.errors import NotFound, PermissionDenied
from offline_fix.target import platform
from offline_fix.target.errors import ContainerError
from offline_fix.target.stream import ReadOnlyStream

MAGICS = (
    (0, b"vhdxfile", "vhdx"),
    (0, b"QFI\xfb", "qcow2"),
    (0, b"KDMV", "vmdk"),
    (0, b"# Disk DescriptorFile", "vmdk"),
    (0, b"EVF\x09\x0d\x0a\xff\x00", "e01"),
    (64, b"\x7f\x10\xda\xbe", "vdi"),
)


class Disk:
    """A disk opened read-only. ``read`` returns exactly ``length`` bytes or raises."""

    format = "raw"
    subformat = ""

    def __init__(self, path: str, fh, size: int, *, is_device: bool = False) -> None:
        self.path = path
        self.fh = fh
        self.size = size
        self.is_device = is_device
        self.warnings: list[str] = []
        self.sector_size = 512

    def read(self, offset: int, length: int) -> bytes:
        if offset < 0 or length < 0 or offset + length > self.size:
            raise ContainerError("read outside the disk", path=self.path, offset=offset,
                                 expected=f"end <= {self.size}", found=offset + length)
        data = self._read(offset, length)
        if len(data) != length:
            raise ContainerError("disk image truncated", path=self.path, offset=offset, expected=length, found=len(data))
        return data

    def _read(self, offset: int, length: int) -> bytes:
        self.fh.seek(offset)
        return self.fh.read(length)

    def stream(self, offset: int = 0, size: int | None = None) -> io.BufferedReader:
        """A read-only, seekable file object over [offset, offset+size) of the disk."""
        return io.BufferedReader(_Window(self, offset, self.size - offset if size is None else size), buffer_size=65536)

    def describe(self) -> dict:
        d = {"format": self.format, "virtual_size": self.size, "path": self.path}
        if self.subformat:
            d["subformat"] = self.subformat
        if self.is_device:
            d["block_device"] = True
        else:
            try:
                d["file_size"] = os.path.getsize(self.path)
            except OSError:
                pass
        return d

    def close(self) -> None:
        self.fh.close()


class _Window(ReadOnlyStream):
    def __init__(self, disk: Disk, offset: int, size: int) -> None:
        self.disk, self.base, self.size, self.pos = disk, offset, size, 0

    def readinto(self, buf) -> int:
        n = max(0, min(len(buf), self.size - self.pos))
        if n == 0:
            return 0
        data = self.disk.read(self.base + self.pos, n)
        buf[:n] = data
        self.pos += n
        return n


class VhdDisk(Disk):
    format = "vhd"

    def __init__(self, path: str, fh) -> None:
        from offline_fix.target.vhd import VhdFile

        self.vhd = VhdFile(fh, path)
        super().__init__(path, fh, self.vhd.virtual_size)
        self.subformat = self.vhd.subformat

    def _read(self, offset: int, length: int) -> bytes:
        return self.vhd.read(offset, length)


class VhdxDisk(Disk):
    format = "vhdx"

    def __init__(self, path: str, fh) -> None:
        from offline_fix.target.vhdx import VhdxFile

        self.vhdx = VhdxFile(fh, path)
        super().__init__(path, fh, self.vhdx.virtual_size)
        self.subformat = self.vhdx.describe()["subformat"]
        self.sector_size = self.vhdx.logical_sector_size
        if self.vhdx.log_pending:
            self.warnings.append("the VHDX log holds writes not yet applied: what is read may be stale; "
                                 "open the disk once in Hyper-V (or run `qemu-img check -r all`) to replay it")

    def _read(self, offset: int, length: int) -> bytes:
        return self.vhdx.read(offset, length)


class DissectDisk(Disk):
    """Read-only formats through dissect.target's container layer."""

    def __init__(self, path: str, fh, fmt: str) -> None:
        from dissect.target import container

        fh.close()
        try:
            self.container = container.open(path)
        except Exception as exc:  # dissect raises its own ContainerError wrapping anything
            raise ContainerError(f"{fmt} image could not be opened: {exc}", path=path) from None
        super().__init__(path, self.container, self.container.size)
        self.format = fmt

    def _read(self, offset: int, length: int) -> bytes:
        self.container.seek(offset)
        return self.container.read(length)


def sniff(fh) -> str:
    head = fh.read(4096)
    for offset, magic, fmt in MAGICS:
        if head[offset : offset + len(magic)] == magic:
            return fmt
    from offline_fix.target.vhd import looks_like_vhd

    size = fh.seek(0, os.SEEK_END)
    if looks_like_vhd(fh, size):
        return "vhd"
    return "raw"


def open_disk(path: str) -> Disk:
    """Open an image file or a block device read-only."""
    try:
        fh = open(path, "rb", buffering=0)
    except FileNotFoundError:
        raise NotFound(f"no such file or device: {path}") from None
    except PermissionError:
        raise PermissionDenied(f"permission denied opening {path} (run as root or Administrator)") from None
    except IsADirectoryError:
        raise NotFound(f"{path} is a folder, not a disk image") from None
    except OSError as exc:
        if exc.errno in (errno.ENXIO, errno.ENODEV, errno.ENOMEDIUM):
            raise NotFound(f"device {path} has no medium or does not exist") from None
        raise
    try:
        if platform.is_block_device(path):
            size = platform.device_size(fh, path)
            return Disk(path, fh, size, is_device=True)
        fmt = sniff(fh)
        fh.seek(0)
        if fmt == "vhdx":
            return VhdxDisk(path, fh)
        if fmt == "vhd":
            return VhdDisk(path, fh)
        if fmt == "raw":
            return Disk(path, fh, fh.seek(0, os.SEEK_END))
        return DissectDisk(path, fh, fmt)
    except BaseException:
        fh.close()
        raise
