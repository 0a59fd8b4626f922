"""VHDX containers: headers, region table, metadata, block allocation table (read and map).

Specification: Microsoft, "[MS-VHDX]: Virtual Hard Disk v2 (VHDX) File Format", sections 2.2
(headers, region table), 2.3 (log), 2.4 (BAT), 2.6 (metadata). Every header and region table is
checked with its CRC-32C; the current header is the valid one with the higher sequence number.
A non-empty log (LogGuid not zero) means the file holds writes not yet applied: reading it as is
would show stale data, so it is refused until Hyper-V (or `qemu-img check -r all`) replays it.
"""

from __future__ import annotations

import os
import struct
import uuid
from dataclasses import dataclass

from dissect.util.hash.crc32c import crc32c

from offline_fix.target.errors import UnsupportedContainer, VhdxError

KiB = 1024
MiB = 1024 * KiB

FILE_IDENTIFIER_SIGNATURE = b"vhdxfile"
HEADER_OFFSETS = (64 * KiB, 128 * KiB)
HEADER_SIZE = 4 * KiB
REGION_TABLE_OFFSETS = (192 * KiB, 256 * KiB)
REGION_TABLE_SIZE = 64 * KiB

# VHDX_HEADER (MS-VHDX 2.2.2)
HEADER = struct.Struct(
    "<"
    "4s"  # 0  Signature "head"
    "I"  # 4  Checksum (CRC-32C of the 4 KiB header with this field zero)
    "Q"  # 8  SequenceNumber
    "16s"  # 16 FileWriteGuid
    "16s"  # 32 DataWriteGuid
    "16s"  # 48 LogGuid (zero: the log is empty)
    "H"  # 64 LogVersion
    "H"  # 66 Version (1)
    "I"  # 68 LogLength
    "Q"  # 72 LogOffset
)
assert HEADER.size == 80
HEADER_CHECKSUM_OFFSET = 4
HEADER_DATA_WRITE_GUID_OFFSET = 32

# VHDX_REGION_TABLE_HEADER and _ENTRY (MS-VHDX 2.2.3)
REGION_HEADER = struct.Struct("<4sIII")  # Signature "regi", Checksum, EntryCount, Reserved
REGION_ENTRY = struct.Struct("<16sQII")  # Guid, FileOffset, Length, Required (bit 0)
assert REGION_HEADER.size == 16 and REGION_ENTRY.size == 32
MAX_REGION_ENTRIES = 2047

BAT_GUID = uuid.UUID("2DC27766-F623-4200-9D64-115E9BFD4A08")
METADATA_GUID = uuid.UUID("8B7CA206-4790-4B9A-B8FE-575F050F886E")

# VHDX_METADATA_TABLE_HEADER and _ENTRY (MS-VHDX 2.6.1)
METADATA_HEADER = struct.Struct("<8sHH20s")  # Signature "metadata", Reserved, EntryCount, Reserved2
METADATA_ENTRY = struct.Struct("<16sIII4s")  # ItemId, Offset, Length, flags, Reserved
assert METADATA_HEADER.size == 32 and METADATA_ENTRY.size == 32
MAX_METADATA_ENTRIES = 2047
MAX_METADATA_REGION = 64 * MiB  # Windows makes 1 MiB; read no more than this into memory

FILE_PARAMETERS = uuid.UUID("CAA16737-FA36-4D43-B3B6-33F0AA44E76B")
VIRTUAL_DISK_SIZE = uuid.UUID("2FA54224-CD1B-4876-B211-5DBED83BF4B8")
VIRTUAL_DISK_ID = uuid.UUID("BECA12AB-B2E6-4523-93EF-C309E000C746")
LOGICAL_SECTOR_SIZE = uuid.UUID("8141BF1D-A96F-4709-BA47-F233A8FAAB5F")
PHYSICAL_SECTOR_SIZE = uuid.UUID("CDA348C7-445D-4471-9CC9-E9885251C556")
PARENT_LOCATOR = uuid.UUID("A8D35F2D-B30B-454D-ABF7-D3D84834AB0C")

# BAT entry states (MS-VHDX 2.5.1.1)
PAYLOAD_BLOCK_NOT_PRESENT = 0
PAYLOAD_BLOCK_UNDEFINED = 1
PAYLOAD_BLOCK_ZERO = 2
PAYLOAD_BLOCK_UNMAPPED = 3
PAYLOAD_BLOCK_FULLY_PRESENT = 6
PAYLOAD_BLOCK_PARTIALLY_PRESENT = 7
_ZERO_STATES = (PAYLOAD_BLOCK_NOT_PRESENT, PAYLOAD_BLOCK_UNDEFINED, PAYLOAD_BLOCK_ZERO, PAYLOAD_BLOCK_UNMAPPED)


def _guid(raw: bytes) -> uuid.UUID:
    return uuid.UUID(bytes_le=raw)


def _read_exact(fh, offset: int, length: int, what: str) -> bytes:
    fh.seek(offset)
    data = fh.read(length)
    if len(data) != length:
        raise VhdxError(f"VHDX truncated while reading the {what}", offset=offset, expected=length, found=len(data))
    return data


def _crc_ok(block: bytes, checksum_offset: int) -> bool:
    (stored,) = struct.unpack_from("<I", block, checksum_offset)
    zeroed = block[:checksum_offset] + b"\x00\x00\x00\x00" + block[checksum_offset + 4 :]
    return crc32c(zeroed) == stored


@dataclass(frozen=True)
class VhdxHeader:
    index: int  # 0 or 1: which of the two header slots
    offset: int
    sequence: int
    file_write_guid: uuid.UUID
    data_write_guid: uuid.UUID
    log_guid: uuid.UUID
    log_version: int
    version: int
    log_length: int
    log_offset: int
    raw: bytes


class VhdxFile:
    """A VHDX file opened read-only (``map`` gives the host offsets a writer would patch)."""

    format = "vhdx"

    def __init__(self, fh, path: str | None = None) -> None:
        self.fh = fh
        self.path = path
        self.file_size = os.fstat(fh.fileno()).st_size if hasattr(fh, "fileno") else self._size_by_seek()
        ident = _read_exact(fh, 0, 8, "file identifier")
        if ident != FILE_IDENTIFIER_SIGNATURE:
            raise VhdxError("not a VHDX file", offset=0, field="Signature", expected=FILE_IDENTIFIER_SIGNATURE, found=ident)
        self.header = self._current_header()
        if self.header.version != 1:
            raise UnsupportedContainer(f"VHDX header version {self.header.version} (expected 1)", path=path)
        self.log_pending = self.header.log_guid.int != 0
        self.regions = self._region_table()
        self._read_metadata()
        if self.has_parent:
            raise UnsupportedContainer(
                "differencing VHDX (it has a parent disk): merge it first (Hyper-V: Merge-VHD; "
                "or qemu-img convert) and point offline-fix at the merged disk", path=path)
        self._read_bat()

    def _size_by_seek(self) -> int:
        pos = self.fh.tell()
        size = self.fh.seek(0, os.SEEK_END)
        self.fh.seek(pos)
        return size

    # -- headers and regions -----------------------------------------------------------------------
    def _current_header(self) -> VhdxHeader:
        valid = []
        for index, offset in enumerate(HEADER_OFFSETS):
            raw = _read_exact(self.fh, offset, HEADER_SIZE, f"header {index + 1}")
            fields = HEADER.unpack_from(raw)
            if fields[0] != b"head" or not _crc_ok(raw, HEADER_CHECKSUM_OFFSET):
                continue
            valid.append(VhdxHeader(index, offset, fields[2], _guid(fields[3]), _guid(fields[4]), _guid(fields[5]),
                                    fields[6], fields[7], fields[8], fields[9], raw))
        if not valid:
            raise VhdxError("VHDX: neither header has a valid signature and CRC-32C", path=self.path, offset=HEADER_OFFSETS[0])
        if len(valid) == 2 and valid[0].sequence == valid[1].sequence and valid[0].raw != valid[1].raw:
            raise VhdxError("VHDX: both headers carry the same sequence number but differ", path=self.path)
        return max(valid, key=lambda h: h.sequence)

    def _region_table(self) -> dict[uuid.UUID, tuple[int, int]]:
        errors = []
        for offset in REGION_TABLE_OFFSETS:
            raw = _read_exact(self.fh, offset, REGION_TABLE_SIZE, "region table")
            signature, _, count, _ = REGION_HEADER.unpack_from(raw)
            if signature != b"regi" or not _crc_ok(raw, 4):
                errors.append(offset)
                continue
            if count > MAX_REGION_ENTRIES:
                raise VhdxError("VHDX region table entry count too large", offset=offset, expected=f"<= {MAX_REGION_ENTRIES}", found=count)
            regions = {}
            for i in range(count):
                guid, file_offset, length, required = REGION_ENTRY.unpack_from(raw, REGION_HEADER.size + i * REGION_ENTRY.size)
                gid = _guid(guid)
                if gid not in (BAT_GUID, METADATA_GUID) and required & 1:
                    raise UnsupportedContainer(f"VHDX has a required region this tool does not know ({gid})", path=self.path)
                if file_offset % MiB or file_offset + length > self.file_size:
                    raise VhdxError("VHDX region lies outside the file (truncated?)", path=self.path, offset=file_offset,
                                    expected=f"end <= {self.file_size}", found=file_offset + length)
                regions[gid] = (file_offset, length)
            for needed in (BAT_GUID, METADATA_GUID):
                if needed not in regions:
                    raise VhdxError(f"VHDX region table lacks the {'BAT' if needed == BAT_GUID else 'metadata'} region", offset=offset)
            return regions
        raise VhdxError("VHDX: neither region table has a valid signature and CRC-32C", path=self.path, offset=errors[0])

    def _read_metadata(self) -> None:
        base, length = self.regions[METADATA_GUID]
        if length > MAX_METADATA_REGION:
            raise VhdxError("VHDX metadata region implausibly large", offset=base,
                            expected=f"<= {MAX_METADATA_REGION}", found=length)
        raw = _read_exact(self.fh, base, length, "metadata region")
        signature, _, count, _ = METADATA_HEADER.unpack_from(raw)
        if signature != b"metadata":
            raise VhdxError("VHDX metadata table signature wrong", offset=base, expected=b"metadata", found=signature)
        if count > MAX_METADATA_ENTRIES:
            raise VhdxError("VHDX metadata entry count too large", offset=base, found=count)
        items = {}
        for i in range(count):
            item_id, off, ln, _flags, _ = METADATA_ENTRY.unpack_from(raw, METADATA_HEADER.size + i * METADATA_ENTRY.size)
            if off + ln > length:
                raise VhdxError("VHDX metadata item outside its region", offset=base + off, found=ln)
            items[_guid(item_id)] = raw[off : off + ln]

        def need(gid: uuid.UUID, name: str, size: int) -> bytes:
            data = items.get(gid)
            if data is None or len(data) < size:
                raise VhdxError(f"VHDX metadata lacks {name}", offset=base)
            return data

        block_size, flags = struct.unpack_from("<II", need(FILE_PARAMETERS, "File Parameters", 8))
        self.block_size = block_size
        self.has_parent = bool(flags & 2)
        self.leave_blocks_allocated = bool(flags & 1)
        (self.virtual_size,) = struct.unpack_from("<Q", need(VIRTUAL_DISK_SIZE, "Virtual Disk Size", 8))
        (self.logical_sector_size,) = struct.unpack_from("<I", need(LOGICAL_SECTOR_SIZE, "Logical Sector Size", 4))
        if block_size < MiB or block_size > 256 * MiB or block_size & (block_size - 1):
            raise VhdxError("VHDX block size invalid", field="BlockSize", expected="power of two, 1 to 256 MiB", found=block_size)
        if self.logical_sector_size not in (512, 4096):
            raise VhdxError("VHDX logical sector size invalid", field="LogicalSectorSize", expected="512 or 4096", found=self.logical_sector_size)
        if self.virtual_size == 0 or self.virtual_size > 64 * 1024**4:
            raise VhdxError("VHDX virtual disk size invalid", field="VirtualDiskSize", found=self.virtual_size)

    def _read_bat(self) -> None:
        base, length = self.regions[BAT_GUID]
        self.chunk_ratio = (2**23 * self.logical_sector_size) // self.block_size
        self.data_blocks = -(-self.virtual_size // self.block_size)
        # payload entries with a sector-bitmap entry after every chunk_ratio of them (MS-VHDX 2.5)
        needed = self.data_blocks + (self.data_blocks - 1) // self.chunk_ratio
        if needed * 8 > length:
            raise VhdxError("VHDX BAT region too small for the virtual size", offset=base, expected=needed * 8, found=length)
        raw = _read_exact(self.fh, base, needed * 8, "block allocation table")
        self.bat_offset = base
        self.bat = struct.unpack(f"<{needed}Q", raw)

    # -- mapping -----------------------------------------------------------------------------------
    def bat_index(self, block: int) -> int:
        return block + block // self.chunk_ratio

    def block_location(self, block: int) -> tuple[int, int | None]:
        """(state, file offset of the block or None)."""
        entry = self.bat[self.bat_index(block)]
        state = entry & 0x7
        if state in (PAYLOAD_BLOCK_FULLY_PRESENT, PAYLOAD_BLOCK_PARTIALLY_PRESENT):
            file_offset = (entry >> 20) * MiB
            if file_offset + self.block_size > self.file_size:
                raise VhdxError("VHDX block lies beyond the end of the file (truncated?)", path=self.path,
                                offset=file_offset, expected=f"<= {self.file_size}", found=file_offset + self.block_size)
            return state, file_offset
        if state in _ZERO_STATES:
            return state, None
        raise VhdxError("VHDX BAT entry has an invalid state", offset=self.bat_offset + 8 * self.bat_index(block), found=state)

    def extents(self, offset: int, length: int):
        """Yield (virtual offset, length, file offset or None for zeros, state) covering the range."""
        end = min(offset + length, self.virtual_size)
        while offset < end:
            block, within = divmod(offset, self.block_size)
            run = min(self.block_size - within, end - offset)
            state, file_offset = self.block_location(block)
            if state == PAYLOAD_BLOCK_PARTIALLY_PRESENT:
                raise VhdxError("VHDX block partially present in a disk without a parent", path=self.path,
                                offset=self.bat_offset + 8 * self.bat_index(block))
            yield offset, run, (file_offset + within if file_offset is not None else None), state
            offset += run

    def read(self, offset: int, length: int) -> bytes:
        parts = []
        for _voff, run, file_offset, _state in self.extents(offset, length):
            if file_offset is None:
                parts.append(bytes(run))
            else:
                self.fh.seek(file_offset)
                data = self.fh.read(run)
                if len(data) != run:
                    raise VhdxError("VHDX truncated inside a data block", path=self.path, offset=file_offset, expected=run, found=len(data))
                parts.append(data)
        return b"".join(parts)

    def describe(self) -> dict:
        return {
            "format": "vhdx",
            "subformat": "differencing" if self.has_parent else ("fixed" if self.leave_blocks_allocated else "dynamic"),
            "virtual_size": self.virtual_size,
            "block_size": self.block_size,
            "logical_sector_size": self.logical_sector_size,
            "log_pending": self.log_pending,
            "header_sequence": self.header.sequence,
        }
