"""The REGF base block (file header): layout, checksum, dirty state.

Specification: Maxim Suhanov, "Windows registry file format specification",
https://github.com/msuhanov/regf/blob/master/Windows%20registry%20file%20format%20specification.md
("Base block"; "Dirty state of a hive"). Names follow Microsoft's HBASE_BLOCK where known.

The same layout heads a primary file (type 0) and a transaction log (type 1 old format, type 6
new format; in a log only the first 512 bytes are meaningful).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, replace
from datetime import datetime, timedelta, timezone

from offline_fix.hive.errors import BaseBlockError

BASE_BLOCK_SIZE = 4096
HBIN_START = 4096  # file offset of the hive bins data: cell offsets are relative to it
SIGNATURE = b"regf"

FILE_TYPE_PRIMARY = 0
FILE_TYPE_LOG_OLD = 1  # Windows 8 and earlier: base block + dirty vector + dirty pages
FILE_TYPE_LOG_VARIANT2 = 2
FILE_TYPE_LOG_NEW = 6  # Windows 8.1 and later: base block + HvLE log entries

# HBASE_BLOCK, the part before the checksum (offsets in the comments).
_HEAD = struct.Struct(
    "<"
    "4s"  # 0   Signature "regf"
    "I"  # 4   Sequence1 (primary sequence number)
    "I"  # 8   Sequence2 (secondary sequence number)
    "Q"  # 12  TimeStamp (last written, FILETIME UTC)
    "I"  # 20  Major (1)
    "I"  # 24  Minor (3, 4, 5, 6)
    "I"  # 28  Type (0 primary, 1/2/6 log)
    "I"  # 32  Format (1: direct memory load)
    "I"  # 36  RootCell (relative to the hive bins data)
    "I"  # 40  Length (hive bins data size)
    "I"  # 44  Cluster (clustering factor)
    "64s"  # 48  FileName (UTF-16LE, partial path, debugging only)
    "16s"  # 112 RmId (GUID)
    "16s"  # 128 LogId (GUID)
    "I"  # 144 Flags (bit 0: KTM locked the hive)
    "16s"  # 148 TmId (GUID)
    "4s"  # 164 GuidSignature "rmtm"
    "Q"  # 168 LastReorganizeTime (FILETIME)
)
CHECKSUM_OFFSET = 508
CHECKSUM_COVERS = 508  # the checksum is the XOR-32 of bytes 0..507
BOOT_TYPE_OFFSET = 4088
BOOT_RECOVER_OFFSET = 4092
assert _HEAD.size == 176

_FILETIME_EPOCH = datetime(1601, 1, 1, tzinfo=timezone.utc)


def filetime_to_datetime(ft: int) -> datetime | None:
    """FILETIME (100 ns ticks since 1601) to an aware UTC datetime; None for 0 or out of range."""
    if ft == 0:
        return None
    try:
        return _FILETIME_EPOCH + timedelta(microseconds=ft // 10)
    except OverflowError:
        return None


def datetime_to_filetime(dt: datetime) -> int:
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=timezone.utc)
    delta = dt - _FILETIME_EPOCH
    return (delta.days * 86400 + delta.seconds) * 10_000_000 + delta.microseconds * 10


def checksum(header: bytes) -> int:
    """XOR-32 of the first 508 bytes, with Windows' two special cases (0 -> 1, -1 -> -2)."""
    if len(header) < CHECKSUM_COVERS:
        raise BaseBlockError("base block too short for a checksum", expected=CHECKSUM_COVERS, found=len(header))
    value = 0
    for (word,) in struct.iter_unpack("<I", header[:CHECKSUM_COVERS]):
        value ^= word
    if value == 0xFFFFFFFF:
        return 0xFFFFFFFE
    if value == 0:
        return 1
    return value


@dataclass(frozen=True)
class BaseBlock:
    signature: bytes
    sequence1: int
    sequence2: int
    timestamp: int  # FILETIME
    major: int
    minor: int
    file_type: int
    file_format: int
    root_cell: int
    hive_bins_size: int
    clustering_factor: int
    file_name_raw: bytes
    rm_id: bytes
    log_id: bytes
    flags: int
    tm_id: bytes
    guid_signature: bytes
    last_reorganized: int
    stored_checksum: int
    computed_checksum: int
    raw: bytes  # the bytes parsed (4096 for a primary, at least 512 for a log)

    @classmethod
    def parse(cls, data: bytes, *, what: str = "base block") -> "BaseBlock":
        """Parse the first bytes of a hive or log. Only structure is checked here (signature and
        length); whether the block is usable is asked with ``problems()``."""
        if len(data) < 512:
            raise BaseBlockError(f"{what} truncated", offset=0, expected=">= 512 bytes", found=len(data))
        if data[:4] != SIGNATURE:
            raise BaseBlockError(f"{what}: not a registry hive", offset=0, field="Signature",
                                 expected=SIGNATURE, found=bytes(data[:4]))
        fields = _HEAD.unpack_from(data, 0)
        (stored,) = struct.unpack_from("<I", data, CHECKSUM_OFFSET)
        raw = bytes(data[:BASE_BLOCK_SIZE])
        return cls(*fields, stored_checksum=stored, computed_checksum=checksum(raw), raw=raw)

    # -- state -------------------------------------------------------------------------------
    @property
    def checksum_ok(self) -> bool:
        return self.stored_checksum == self.computed_checksum

    @property
    def sequences_match(self) -> bool:
        return self.sequence1 == self.sequence2

    @property
    def dirty(self) -> bool:
        """Dirty as the specification defines it: a wrong checksum or unequal sequence numbers."""
        return not (self.checksum_ok and self.sequences_match)

    @property
    def file_name(self) -> str:
        return self.file_name_raw.decode("utf-16-le", "replace").split("\x00", 1)[0]

    @property
    def last_written(self) -> datetime | None:
        return filetime_to_datetime(self.timestamp)

    @property
    def version(self) -> str:
        return f"{self.major}.{self.minor}"

    def problems(self) -> list[str]:
        """What makes this base block unusable as the header of a primary file ([] when sound)."""
        issues = []
        if self.major != 1:
            issues.append(f"major version {self.major} (expected 1)")
        if self.minor not in (2, 3, 4, 5, 6):
            issues.append(f"minor version {self.minor} (expected 3 to 6)")
        if self.file_format != 1:
            issues.append(f"file format {self.file_format} (expected 1)")
        if self.hive_bins_size == 0 or self.hive_bins_size % 4096:
            issues.append(f"hive bins data size {self.hive_bins_size} (expected a non-zero multiple of 4096)")
        if self.root_cell >= max(self.hive_bins_size, 1) or self.root_cell % 8:
            issues.append(f"root cell offset {self.root_cell:#x} outside the hive bins data")
        return issues

    # -- writing -----------------------------------------------------------------------------
    def to_bytes(self) -> bytes:
        """Serialise into 4096 bytes, keeping every byte this class does not model as it was,
        with the checksum recomputed."""
        buf = bytearray(self.raw.ljust(BASE_BLOCK_SIZE, b"\x00"))
        _HEAD.pack_into(
            buf, 0, self.signature, self.sequence1, self.sequence2, self.timestamp, self.major,
            self.minor, self.file_type, self.file_format, self.root_cell, self.hive_bins_size,
            self.clustering_factor, self.file_name_raw, self.rm_id, self.log_id, self.flags,
            self.tm_id, self.guid_signature, self.last_reorganized,
        )
        struct.pack_into("<I", buf, CHECKSUM_OFFSET, checksum(bytes(buf)))
        return bytes(buf)

    def updated(self, **changes) -> "BaseBlock":
        """A copy with fields changed; raw, stored and computed checksums follow the change."""
        block = replace(self, **changes)
        raw = block.to_bytes()
        return replace(block, raw=raw, stored_checksum=checksum(raw), computed_checksum=checksum(raw))

    def to_dict(self) -> dict:
        return {
            "signature": self.signature.decode("ascii", "replace"),
            "sequence": [self.sequence1, self.sequence2],
            "last_written": self.last_written.isoformat() if self.last_written else None,
            "version": self.version,
            "file_type": self.file_type,
            "file_format": self.file_format,
            "root_cell_offset": self.root_cell,
            "hive_bins_size": self.hive_bins_size,
            "clustering_factor": self.clustering_factor,
            "file_name": self.file_name,
            "flags": self.flags,
            "checksum": {"stored": self.stored_checksum, "computed": self.computed_checksum,
                         "ok": self.checksum_ok},
            "dirty": self.dirty,
        }


def in_progress(before: BaseBlock, after: BaseBlock) -> BaseBlock:
    """The base block written first when a hive is changed in place: ``after`` with the old
    secondary sequence number, so that the hive reads as dirty ("a write is in progress") until the
    final base block is written last, as the specification describes Windows' own writes."""
    return after.updated(sequence2=before.sequence2)


def new_base_block(*, root_cell: int, hive_bins_size: int, timestamp: int, file_name: str = "",
                   minor: int = 5, sequence: int = 1) -> BaseBlock:
    """A fresh primary-file base block, clean (both sequence numbers equal)."""
    raw = bytearray(BASE_BLOCK_SIZE)
    raw[:4] = SIGNATURE
    name = file_name.encode("utf-16-le")[:64].ljust(64, b"\x00")
    block = BaseBlock(
        signature=SIGNATURE, sequence1=sequence, sequence2=sequence, timestamp=timestamp, major=1,
        minor=minor, file_type=FILE_TYPE_PRIMARY, file_format=1, root_cell=root_cell,
        hive_bins_size=hive_bins_size, clustering_factor=1, file_name_raw=name, rm_id=bytes(16),
        log_id=bytes(16), flags=0, tm_id=bytes(16), guid_signature=b"rmtm",
        last_reorganized=0, stored_checksum=0, computed_checksum=0, raw=bytes(raw),
    )
    return block.updated()
