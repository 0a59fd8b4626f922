"""Where a file's bytes live on the host: file offset -> NTFS clusters -> disk offset -> the host
file or device offset (through the container), so that a change is written in place, byte for byte.

Only what can be patched safely in place is mapped. Refused, with the reason: resident data
(inside the MFT record), compressed, encrypted or sparse data, a range beyond the file's size
(the file would have to grow), unallocated container blocks (sparse VHD/VHDX blocks),
read-only container formats.
"""

from __future__ import annotations

from dataclasses import dataclass

from offline_fix.errors import Refused
from offline_fix.target.disk import Disk, DissectDisk, VhdDisk, VhdxDisk
from offline_fix.target.errors import FilesystemError

ATTR_COMPRESSED = 0x00FF
ATTR_ENCRYPTED = 0x4000
ATTR_SPARSE = 0x8000


@dataclass(frozen=True)
class Extent:
    file_offset: int
    length: int
    disk_offset: int


@dataclass(frozen=True)
class FileLayout:
    path: str
    size: int
    extents: tuple[Extent, ...]

    def disk_ranges(self, offset: int, length: int) -> list[tuple[int, int, int]]:
        """(file offset, disk offset, length) pieces covering [offset, offset+length)."""
        if offset < 0 or offset + length > self.size:
            raise Refused(f"{self.path}: the change reaches byte {offset + length} of a {self.size}-byte file: "
                          "the file would have to grow, which offline-fix does not do inside images")
        out = []
        for ext in self.extents:
            lo, hi = max(offset, ext.file_offset), min(offset + length, ext.file_offset + ext.length)
            if lo < hi:
                out.append((lo, ext.disk_offset + (lo - ext.file_offset), hi - lo))
        if sum(piece[2] for piece in out) != length:
            raise FilesystemError(f"{self.path}: data runs do not cover bytes {offset}..{offset + length}")
        return out


def ntfs_file_layout(volume, path: str) -> FileLayout:
    """The extents of a file's unnamed $DATA stream on an NTFS volume inside a disk."""
    fs = volume.fs()
    record = fs._record(path)
    if record.is_reparse_point():
        raise Refused(f"{path} is a junction or symbolic link; not written")
    try:
        attrs = record.attributes.find("", 0x80)
    except Exception as exc:
        raise FilesystemError(f"{path}: attributes unreadable: {exc}") from None
    if not attrs:
        raise Refused(f"{path} has no data stream")
    for attr in attrs:
        if attr.resident:
            raise Refused(f"{path}: its data is resident in the MFT record; not written in place")
        flags = attr.header.flags
        if flags & ATTR_COMPRESSED:
            raise Refused(f"{path} is NTFS-compressed; offline-fix does not write compressed files")
        if flags & ATTR_ENCRYPTED:
            raise Refused(f"{path} is EFS-encrypted; offline-fix does not write encrypted files")
        if flags & ATTR_SPARSE:
            raise Refused(f"{path} is a sparse file; offline-fix does not write sparse files")
    try:
        size = record.size()
        runs = list(attrs.dataruns())
    except Exception as exc:  # dissect raises assorted errors on damaged mapping pairs
        raise FilesystemError(f"{path}: data runs unreadable: {exc}") from None
    cluster = fs.ntfs.cluster_size
    extents = []
    file_offset = 0
    for lcn, count in runs:
        length = count * cluster
        if lcn is None:
            raise Refused(f"{path} has a sparse run at file offset {file_offset}; not written")
        if (lcn + count) * cluster > volume.size:
            raise FilesystemError(f"{path}: a data run points outside its volume", offset=lcn * cluster,
                                  expected=f"<= {volume.size}", found=(lcn + count) * cluster)
        extents.append(Extent(file_offset, length, volume.offset + lcn * cluster))
        file_offset += length
    if file_offset < size:
        raise FilesystemError(f"{path}: data runs cover {file_offset} bytes of a {size}-byte file")
    return FileLayout(path, size, tuple(extents))


def fat_file_layout(volume, path: str) -> FileLayout:
    """The extents of a file on a FAT16/FAT32 volume inside a disk: its cluster chain (checked
    against its size by offline_fix/target/fat.py), contiguous clusters merged."""
    size, runs = volume.fs().extents(path)
    extents = []
    for file_offset, length, volume_offset in runs:
        if volume_offset + length > volume.size:
            raise FilesystemError(f"{path}: a cluster lies outside its volume", offset=volume_offset,
                                  expected=f"<= {volume.size}", found=volume_offset + length)
        extents.append(Extent(file_offset, length, volume.offset + volume_offset))
    return FileLayout(path, size, tuple(extents))


def file_layout(volume, path: str) -> FileLayout:
    """Where a file's bytes lie on the disk, by the volume's filesystem."""
    if volume.filesystem == "ntfs":
        return ntfs_file_layout(volume, path)
    if volume.filesystem in ("fat32", "fat16"):
        return fat_file_layout(volume, path)
    raise Refused(f"{path}: offline-fix writes in place on NTFS and FAT volumes only, not {volume.filesystem}")


def host_ranges(disk: Disk, offset: int, length: int) -> list[tuple[int, int, int]]:
    """(disk offset, host offset, length) pieces for a range of the virtual disk."""
    if offset < 0 or offset + length > disk.size:
        raise Refused(f"range {offset}..{offset + length} lies outside the {disk.size}-byte disk")
    if isinstance(disk, DissectDisk):
        raise Refused(f"{disk.format} images are read-only in offline-fix: convert the disk to raw, VHD or "
                      "VHDX (qemu-img convert) to change it")
    if isinstance(disk, VhdxDisk):
        from offline_fix.target.vhdx import PAYLOAD_BLOCK_FULLY_PRESENT

        if disk.vhdx.log_pending:
            raise Refused("the VHDX log holds writes not yet applied: open the disk once in Hyper-V (or "
                          "`qemu-img check -r all`) so that its log is replayed, then retry")
        out = []
        for voff, run, file_offset, state in disk.vhdx.extents(offset, length):
            if state != PAYLOAD_BLOCK_FULLY_PRESENT or file_offset is None:
                raise Refused(f"VHDX block at disk offset {voff} is not fully present (state {state}); "
                              "offline-fix only writes allocated blocks")
            out.append((voff, file_offset, run))
        return out
    if isinstance(disk, VhdDisk):
        out = []
        for voff, run, file_offset, info in disk.vhd.extents(offset, length):
            if file_offset is None:
                raise Refused(f"VHD block at disk offset {voff} is not allocated; offline-fix only writes allocated blocks")
            if info is not None and not disk.vhd.sectors_present(info[0], info[1], run):
                raise Refused(f"VHD sectors at disk offset {voff} are not marked present in the block bitmap")
            out.append((voff, file_offset, run))
        return out
    return [(offset, offset, length)]
