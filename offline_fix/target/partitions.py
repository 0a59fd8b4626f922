"""Partition tables: MBR (with extended/logical partitions) and GPT, read with every bound checked.

References: UEFI Specification 2.10, section 5 (GPT disk layout: protective MBR, GPT header with
CRC32, partition entry array with CRC32, backup header); the classic MBR layout (four 16-byte
entries at offset 446, signature 0x55AA, extended partitions chained through EBRs).
Also decides whether a disk has no partition table at all (a bare volume).
"""

from __future__ import annotations

import struct
import uuid
import zlib
from dataclasses import dataclass, field

from offline_fix.target.errors import PartitionTableError

MBR_ENTRY = struct.Struct("<B3sB3sII")  # status, CHS first, type, CHS last, first LBA, sector count
assert MBR_ENTRY.size == 16
MBR_TABLE_OFFSET = 446
EXTENDED_TYPES = (0x05, 0x0F, 0x85)
GPT_PROTECTIVE = 0xEE
MAX_LOGICAL_PARTITIONS = 128  # hop limit for EBR chains (hostile disks can loop them)

GPT_HEADER = struct.Struct(
    "<"
    "8s"  # 0  Signature "EFI PART"
    "I"  # 8  Revision
    "I"  # 12 HeaderSize
    "I"  # 16 HeaderCRC32
    "I"  # 20 Reserved
    "Q"  # 24 MyLBA
    "Q"  # 32 AlternateLBA
    "Q"  # 40 FirstUsableLBA
    "Q"  # 48 LastUsableLBA
    "16s"  # 56 DiskGUID
    "Q"  # 72 PartitionEntryLBA
    "I"  # 80 NumberOfPartitionEntries
    "I"  # 84 SizeOfPartitionEntry
    "I"  # 88 PartitionEntryArrayCRC32
)
assert GPT_HEADER.size == 92
GPT_ENTRY = struct.Struct("<16s16sQQQ72s")  # type, unique GUID, first LBA, last LBA, attributes, name
assert GPT_ENTRY.size == 128
MAX_GPT_ENTRIES = 1024

MBR_TYPE_NAMES = {
    0x01: "FAT12", 0x04: "FAT16 (<32M)", 0x05: "Extended", 0x06: "FAT16", 0x07: "NTFS/exFAT (IFS)",
    0x0B: "FAT32", 0x0C: "FAT32 (LBA)", 0x0E: "FAT16 (LBA)", 0x0F: "Extended (LBA)",
    0x12: "OEM recovery", 0x17: "Hidden NTFS", 0x27: "Windows RE (hidden NTFS)",
    0x42: "Windows dynamic disk (LDM)", 0x82: "Linux swap", 0x83: "Linux", 0x85: "Linux extended",
    0x8E: "Linux LVM", 0xEE: "GPT protective", 0xEF: "EFI system",
}

GPT_TYPE_NAMES = {
    uuid.UUID("C12A7328-F81F-11D2-BA4B-00A0C93EC93B"): "EFI system partition",
    uuid.UUID("E3C9E316-0B5C-4DB8-817D-F92DF00215AE"): "Microsoft reserved",
    uuid.UUID("EBD0A0A2-B9E5-4433-87C0-68B6B72699C7"): "Basic data",
    uuid.UUID("DE94BBA4-06D1-4D40-A16A-BFD50179D6AC"): "Windows recovery",
    uuid.UUID("5808C8AA-7E8F-42E0-85D2-E1E90434CFB3"): "Windows LDM metadata",
    uuid.UUID("AF9B60A0-1431-4F62-BC68-3311714A69AD"): "Windows LDM data",
    uuid.UUID("E75CAF8F-F680-4CEE-AFA3-B001E56EFC2D"): "Windows Storage Spaces",
    uuid.UUID("0FC63DAF-8483-4772-8E79-3D69D8477DE4"): "Linux filesystem",
    uuid.UUID("0657FD6D-A4AB-43C4-84E5-0933C84B4F4F"): "Linux swap",
    uuid.UUID("E6D6D379-F507-44C2-A23C-238F2A3DF928"): "Linux LVM",
    uuid.UUID("21686148-6449-6E6F-744E-656564454649"): "BIOS boot",
}
GPT_ESP = uuid.UUID("C12A7328-F81F-11D2-BA4B-00A0C93EC93B")

# Boot-sector OEM ids that show a volume (not a partition table) starts at sector 0.
VOLUME_OEM_IDS = (b"NTFS    ", b"-FVE-FS-", b"EXFAT   ", b"ReFS\x00\x00\x00\x00", b"MSWIN4.1", b"MSDOS5.0", b"mkfs.fat")


@dataclass
class Partition:
    index: int  # 1-based, in table order (logical partitions follow the primaries, from 5)
    offset: int  # bytes from the start of the disk
    size: int  # bytes
    scheme: str  # "mbr", "gpt" or "none" (a bare volume)
    type_code: str  # "0x07" for MBR, the type GUID for GPT, "" for a bare volume
    type_name: str
    name: str = ""  # GPT partition name
    guid: str | None = None  # GPT unique partition GUID
    bootable: bool = False
    problems: list[str] = field(default_factory=list)

    @property
    def is_esp(self) -> bool:
        return self.type_code.upper() == str(GPT_ESP).upper() or self.type_code == "0xef"

    def to_dict(self) -> dict:
        d = {"index": self.index, "offset": self.offset, "size": self.size, "scheme": self.scheme,
             "type": self.type_code, "type_name": self.type_name}
        if self.name:
            d["name"] = self.name
        if self.guid:
            d["guid"] = self.guid
        if self.bootable:
            d["bootable"] = True
        if self.problems:
            d["problems"] = self.problems
        return d


@dataclass
class PartitionTable:
    scheme: str  # "mbr", "gpt", "none"
    partitions: list[Partition]
    sector_size: int = 512
    disk_guid: str | None = None
    disk_signature: str | None = None
    warnings: list[str] = field(default_factory=list)


def _entry_problems(offset: int, size: int, disk_size: int) -> list[str]:
    if offset + size > disk_size:
        return [f"extends {offset + size - disk_size} bytes beyond the end of the disk (truncated image?)"]
    return []


def read_partition_table(read, disk_size: int, sector_size: int = 512) -> PartitionTable:
    """``read(offset, length) -> bytes`` reads the disk. Returns the table, or scheme "none" when
    sector 0 holds a volume boot sector or nothing recognisable."""
    if disk_size < 512:
        raise PartitionTableError("disk too small to hold a partition table or a volume", expected=">= 512 bytes", found=disk_size)
    sector0 = read(0, 512)
    if sector0[3:11] in VOLUME_OEM_IDS or sector0[3:7] == b"ReFS":
        return PartitionTable("none", [Partition(1, 0, disk_size, "none", "", "whole disk (no partition table)")], sector_size)
    if sector0[510:512] != b"\x55\xaa":
        return PartitionTable("none", [], sector_size)
    entries = [MBR_ENTRY.unpack_from(sector0, MBR_TABLE_OFFSET + 16 * i) for i in range(4)]
    if any(e[2] == GPT_PROTECTIVE for e in entries):
        for ss in dict.fromkeys((sector_size, 512, 4096)):
            if disk_size >= 2 * ss and read(ss, 8) == b"EFI PART":
                return _read_gpt(read, disk_size, ss, sector0)
        table = PartitionTable("gpt", [], sector_size)
        table.warnings.append("protective MBR present but no GPT header found at LBA 1")
        return table
    return _read_mbr(read, disk_size, sector_size, sector0, entries)


def _read_mbr(read, disk_size, ss, sector0, entries) -> PartitionTable:
    (signature,) = struct.unpack_from("<I", sector0, 440)
    table = PartitionTable("mbr", [], ss, disk_signature=f"{signature:08x}")
    extended_start = None
    for i, (status, _, ptype, _, first, count) in enumerate(entries, start=1):
        if ptype == 0 or count == 0:
            continue
        if status not in (0x00, 0x80):
            table.warnings.append(f"MBR entry {i}: status byte {status:#04x} is neither 0x00 nor 0x80")
        offset, size = first * ss, count * ss
        if ptype in EXTENDED_TYPES:
            if extended_start is None:
                extended_start = first
            continue
        part = Partition(i, offset, size, "mbr", f"{ptype:#04x}", MBR_TYPE_NAMES.get(ptype, "unknown"),
                         bootable=status == 0x80)
        part.problems = _entry_problems(offset, size, disk_size)
        table.partitions.append(part)
    if extended_start is not None:
        _read_logical(read, disk_size, ss, extended_start, table)
    return table


def _read_logical(read, disk_size, ss, extended_start, table) -> None:
    seen = set()
    ebr_lba = extended_start
    index = 5
    while len(seen) < MAX_LOGICAL_PARTITIONS:
        if ebr_lba in seen:
            table.warnings.append(f"EBR chain loops back to LBA {ebr_lba}; stopped")
            return
        seen.add(ebr_lba)
        if (ebr_lba + 1) * ss > disk_size:
            table.warnings.append(f"EBR at LBA {ebr_lba} lies beyond the end of the disk; stopped")
            return
        ebr = read(ebr_lba * ss, 512)
        if ebr[510:512] != b"\x55\xaa":
            table.warnings.append(f"EBR at LBA {ebr_lba} has no 0x55AA signature; stopped")
            return
        _, _, ptype, _, first, count = MBR_ENTRY.unpack_from(ebr, MBR_TABLE_OFFSET)
        if ptype and count:
            offset, size = (ebr_lba + first) * ss, count * ss
            part = Partition(index, offset, size, "mbr", f"{ptype:#04x}", MBR_TYPE_NAMES.get(ptype, "unknown"))
            part.problems = _entry_problems(offset, size, disk_size)
            table.partitions.append(part)
            index += 1
        _, _, ntype, _, nfirst, ncount = MBR_ENTRY.unpack_from(ebr, MBR_TABLE_OFFSET + 16)
        if ntype not in EXTENDED_TYPES or ncount == 0:
            return
        ebr_lba = extended_start + nfirst
    table.warnings.append(f"more than {MAX_LOGICAL_PARTITIONS} logical partitions; stopped")


def _parse_gpt_header(raw: bytes, lba: int, disk_size: int, ss: int):
    fields = GPT_HEADER.unpack_from(raw)
    signature, header_size, crc = fields[0], fields[2], fields[3]
    if signature != b"EFI PART":
        return None, f"no GPT signature at LBA {lba}"
    if not 92 <= header_size <= ss:
        return None, f"GPT header at LBA {lba}: header size {header_size} out of range"
    check = bytearray(raw[:header_size])
    check[16:20] = b"\x00\x00\x00\x00"
    if zlib.crc32(check) != crc:
        return None, f"GPT header at LBA {lba}: CRC32 mismatch"
    entries_lba, count, entry_size = fields[10], fields[11], fields[12]
    if entry_size < 128 or entry_size % 8 or count > MAX_GPT_ENTRIES:
        return None, f"GPT header at LBA {lba}: entry array {count} x {entry_size} out of range"
    if (entries_lba * ss) + count * entry_size > disk_size:
        return None, f"GPT header at LBA {lba}: entry array lies beyond the end of the disk"
    return fields, None


def _read_gpt(read, disk_size, ss, sector0) -> PartitionTable:
    warnings = []
    fields, problem = _parse_gpt_header(read(ss, ss), 1, disk_size, ss)
    if fields is None:
        warnings.append(problem)
        backup_lba = disk_size // ss - 1
        fields, problem = _parse_gpt_header(read(backup_lba * ss, ss), backup_lba, disk_size, ss)
        if fields is None:
            raise PartitionTableError(f"GPT unreadable: {warnings[0]}; backup: {problem}", offset=ss)
        warnings.append("using the backup GPT header")
    entries_lba, count, entry_size, entries_crc = fields[10], fields[11], fields[12], fields[13]
    array = read(entries_lba * ss, count * entry_size)
    if zlib.crc32(array) != entries_crc:
        warnings.append("GPT partition entry array CRC32 mismatch")
    table = PartitionTable("gpt", [], ss, disk_guid=str(uuid.UUID(bytes_le=fields[9])), warnings=warnings)
    for i in range(count):
        tguid, pguid, first, last, attrs, name = GPT_ENTRY.unpack_from(array, i * entry_size)
        if tguid == bytes(16):
            continue
        ptype = uuid.UUID(bytes_le=tguid)
        if last < first:
            table.warnings.append(f"GPT entry {i + 1}: last LBA {last} before first LBA {first}; skipped")
            continue
        offset, size = first * ss, (last - first + 1) * ss
        part = Partition(i + 1, offset, size, "gpt", str(ptype).upper(), GPT_TYPE_NAMES.get(ptype, "unknown"),
                         name=name.decode("utf-16-le", "replace").split("\x00", 1)[0],
                         guid=str(uuid.UUID(bytes_le=pguid)).upper())
        part.problems = _entry_problems(offset, size, disk_size)
        table.partitions.append(part)
    return table
