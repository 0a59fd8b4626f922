"""VHD (Virtual PC / Hyper-V v1) containers: fixed and dynamic (read and map).

Specification: Microsoft, "Virtual Hard Disk Image Format Specification" (2006): the hard disk
footer (512 bytes at the end of the file, copied at offset 0 in dynamic disks), the dynamic disk
header and the block allocation table. Numbers are big-endian. Checksums are verified.
"""

from __future__ import annotations

import os
import struct

from offline_fix.target.errors import UnsupportedContainer, VhdError

FOOTER_SIZE = 512
COOKIE = b"conectix"
SPARSE_COOKIE = b"cxsparse"
DISK_FIXED = 2
DISK_DYNAMIC = 3
DISK_DIFFERENCING = 4
UNALLOCATED = 0xFFFFFFFF
SECTOR = 512

FOOTER = struct.Struct(
    ">"
    "8s"  # 0  Cookie "conectix"
    "I"  # 8  Features
    "I"  # 12 File Format Version (0x00010000)
    "Q"  # 16 Data Offset (dynamic header; all ones for fixed disks)
    "I"  # 24 Time Stamp (seconds since 2000-01-01)
    "4s"  # 28 Creator Application
    "I"  # 32 Creator Version
    "4s"  # 36 Creator Host OS
    "Q"  # 40 Original Size
    "Q"  # 48 Current Size
    "I"  # 56 Disk Geometry
    "I"  # 60 Disk Type
    "I"  # 64 Checksum (ones' complement of the byte sum, this field as zero)
    "16s"  # 68 Unique Id
    "B"  # 84 Saved State
)
assert FOOTER.size == 85
FOOTER_CHECKSUM_OFFSET = 64

DYNAMIC_HEADER = struct.Struct(
    ">"
    "8s"  # 0  Cookie "cxsparse"
    "Q"  # 8  Data Offset (unused, all ones)
    "Q"  # 16 Table Offset (BAT)
    "I"  # 24 Header Version
    "I"  # 28 Max Table Entries
    "I"  # 32 Block Size
    "I"  # 36 Checksum
)
assert DYNAMIC_HEADER.size == 40
DYNAMIC_HEADER_SIZE = 1024
DYNAMIC_CHECKSUM_OFFSET = 36
MAX_BAT_ENTRIES = 1 << 22  # 2 MiB blocks: 8 TiB, beyond what VHD can address (2 TiB)


def vhd_checksum(block: bytes, checksum_offset: int) -> int:
    total = sum(block) - sum(block[checksum_offset : checksum_offset + 4])
    return (~total) & 0xFFFFFFFF


def _read_exact(fh, offset: int, length: int, what: str) -> bytes:
    fh.seek(offset)
    data = fh.read(length)
    if len(data) != length:
        raise VhdError(f"VHD truncated while reading the {what}", offset=offset, expected=length, found=len(data))
    return data


def parse_footer(raw: bytes, offset: int) -> tuple:
    fields = FOOTER.unpack_from(raw)
    if fields[0] != COOKIE:
        raise VhdError("VHD footer cookie missing", offset=offset, field="Cookie", expected=COOKIE, found=fields[0])
    if vhd_checksum(raw, FOOTER_CHECKSUM_OFFSET) != fields[12]:
        raise VhdError("VHD footer checksum wrong", offset=offset, field="Checksum",
                       expected=vhd_checksum(raw, FOOTER_CHECKSUM_OFFSET), found=fields[12])
    return fields


def looks_like_vhd(fh, size: int) -> bool:
    """A fixed VHD is a raw disk with a footer; dynamic ones also start with a copy of it."""
    if size < FOOTER_SIZE:
        return False
    fh.seek(size - FOOTER_SIZE)
    tail = fh.read(FOOTER_SIZE)
    fh.seek(0)
    head = fh.read(8)
    return tail[:8] == COOKIE or head == COOKIE


class VhdFile:
    """A VHD file. Fixed disks: the data is the file less its footer. Dynamic: via the BAT."""

    format = "vhd"

    def __init__(self, fh, path: str | None = None) -> None:
        self.fh = fh
        self.path = path
        self.file_size = os.fstat(fh.fileno()).st_size if hasattr(fh, "fileno") else fh.seek(0, os.SEEK_END)
        if self.file_size < FOOTER_SIZE:
            raise VhdError("file too small to be a VHD", path=path, expected=">= 512 bytes", found=self.file_size)
        raw = _read_exact(fh, self.file_size - FOOTER_SIZE, FOOTER_SIZE, "footer")
        try:
            fields = parse_footer(raw, self.file_size - FOOTER_SIZE)
        except VhdError:
            # A dynamic VHD whose tail was cut off still carries its footer copy at offset 0.
            head = _read_exact(fh, 0, FOOTER_SIZE, "footer copy")
            if head[:8] != COOKIE:
                raise
            parse_footer(head, 0)
            raise VhdError("VHD truncated: the footer at the end of the file is missing or damaged "
                           "(the copy at offset 0 is intact)", path=path, offset=self.file_size - FOOTER_SIZE) from None
        self.disk_type = fields[11]
        self.virtual_size = fields[9]
        self.data_offset = fields[3]
        if self.disk_type == DISK_DIFFERENCING:
            raise UnsupportedContainer("differencing VHD (it has a parent disk): merge it first and point "
                                       "offline-fix at the merged disk", path=path)
        if self.disk_type == DISK_FIXED:
            if self.virtual_size > self.file_size - FOOTER_SIZE:
                raise VhdError("fixed VHD truncated: less data than its footer's current size", path=path,
                               expected=self.virtual_size + FOOTER_SIZE, found=self.file_size)
            self.subformat = "fixed"
        elif self.disk_type == DISK_DYNAMIC:
            self.subformat = "dynamic"
            self._read_dynamic_header()
        else:
            raise VhdError("VHD disk type unknown", path=path, field="Disk Type", expected="2, 3 or 4", found=self.disk_type)

    def _read_dynamic_header(self) -> None:
        raw = _read_exact(self.fh, self.data_offset, DYNAMIC_HEADER_SIZE, "dynamic disk header")
        cookie, _, table_offset, _, entries, block_size, stored = DYNAMIC_HEADER.unpack_from(raw)
        if cookie != SPARSE_COOKIE:
            raise VhdError("VHD dynamic header cookie missing", offset=self.data_offset, expected=SPARSE_COOKIE, found=cookie)
        if vhd_checksum(raw, DYNAMIC_CHECKSUM_OFFSET) != stored:
            raise VhdError("VHD dynamic header checksum wrong", offset=self.data_offset, field="Checksum")
        if block_size < SECTOR or block_size % SECTOR or block_size & (block_size - 1):
            raise VhdError("VHD block size invalid", offset=self.data_offset, field="Block Size", found=block_size)
        if entries > MAX_BAT_ENTRIES or entries * block_size < self.virtual_size:
            raise VhdError("VHD BAT size does not cover the disk", offset=self.data_offset,
                           field="Max Table Entries", expected=f">= {-(-self.virtual_size // block_size)}", found=entries)
        self.block_size = block_size
        self.bitmap_size = -(-(block_size // SECTOR) // 8 // SECTOR) * SECTOR
        self.bat_offset = table_offset
        raw_bat = _read_exact(self.fh, table_offset, entries * 4, "block allocation table")
        self.bat = struct.unpack(f">{entries}I", raw_bat)

    def _block(self, block: int) -> int | None:
        entry = self.bat[block]
        if entry == UNALLOCATED:
            return None
        start = entry * SECTOR
        if start + self.bitmap_size + self.block_size > self.file_size - FOOTER_SIZE:
            raise VhdError("VHD block lies beyond the end of the file (truncated?)", path=self.path, offset=start)
        return start

    def extents(self, offset: int, length: int):
        """Yield (virtual offset, length, file offset or None for zeros, bitmap info)."""
        end = min(offset + length, self.virtual_size)
        if self.subformat == "fixed":
            if offset < end:
                yield offset, end - offset, offset, None
            return
        while offset < end:
            block, within = divmod(offset, self.block_size)
            run = min(self.block_size - within, end - offset)
            start = self._block(block)
            if start is None:
                yield offset, run, None, None
            else:
                yield offset, run, start + self.bitmap_size + within, (start, within)
            offset += run

    def sectors_present(self, block_start: int, within: int, length: int) -> bool:
        """Whether every sector of a range inside an allocated block has its bitmap bit set."""
        first, last = within // SECTOR, (within + length - 1) // SECTOR
        bitmap = _read_exact(self.fh, block_start, self.bitmap_size, "sector bitmap")
        return all(bitmap[s // 8] & (0x80 >> (s % 8)) for s in range(first, last + 1))

    def read(self, offset: int, length: int) -> bytes:
        parts = []
        for _voff, run, file_offset, _info in self.extents(offset, length):
            if file_offset is None:
                parts.append(bytes(run))
            else:
                parts.append(_read_exact(self.fh, file_offset, run, "data block"))
        return b"".join(parts)

    def describe(self) -> dict:
        d = {"format": "vhd", "subformat": self.subformat, "virtual_size": self.virtual_size}
        if self.subformat == "dynamic":
            d["block_size"] = self.block_size
        return d
