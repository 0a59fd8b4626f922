"""The fast path of NtfsFS: NTFS file records and folder indexes read straight from the disk.

The common case (a file whose attributes all fit in its base MFT record, data neither compressed
nor encrypted; a folder whose $I30 index is read from its root down) is read straight from the
on-disk structures below, without building dissect.ntfs objects (each costs about a millisecond).
Anything else (an $ATTRIBUTE_LIST, compression, a fixup or bounds mismatch) makes the fast path
answer None, and NtfsFS reads that file through dissect.ntfs as before (whose errors are typed).
Layouts: Microsoft, "FILE_RECORD_SEGMENT_HEADER", "MULTI_SECTOR_HEADER", "ATTRIBUTE_RECORD_HEADER",
"FILE_NAME", "STANDARD_INFORMATION", "INDEX_ROOT", "INDEX_HEADER", "INDEX_ENTRY"
(https://learn.microsoft.com/en-us/windows/win32/devnotes/file-record-segment-header and the
pages beside it); [MS-FSCC] 2.4 for the file attributes; mapping pairs as in the NTFS docs of
libyal/libfsntfs (documentation only).
"""

from __future__ import annotations

import struct as _struct
from dataclasses import dataclass
from datetime import datetime

from offline_fix.errors import OfflineFixError, Refused
from offline_fix.target.errors import FilesystemError
from offline_fix.target.stream import ReadOnlyStream

# FILE_RECORD_SEGMENT_HEADER
_FRS = _struct.Struct("<4sHH"  # 0x00 MULTI_SECTOR_HEADER: Signature "FILE", UpdateSequenceArrayOffset, ...Size
                      "Q"      # 0x08 Reserved1 ($LogFile sequence number)
                      "HH"     # 0x10 SequenceNumber, Reserved2 (link count)
                      "HH"     # 0x14 FirstAttributeOffset, Flags
                      "II"     # 0x18 bytes in use, bytes allocated
                      "Q"      # 0x20 BaseFileRecordSegment (0 for a base record)
                      "H")     # 0x28 next attribute instance
assert _FRS.size == 0x2A
FILE_RECORD_SEGMENT_IN_USE = 0x1
FILE_FILE_NAME_INDEX_PRESENT = 0x2
SEQUENCE_NUMBER_STRIDE = 512  # update sequence array: one entry per 512 bytes

# ATTRIBUTE_RECORD_HEADER: common part, then the resident or the non-resident form
_ATTR = _struct.Struct("<II"  # 0x00 TypeCode, RecordLength
                       "BBH"  # 0x08 FormCode (0 resident, 1 non-resident), NameLength, NameOffset
                       "HH")  # 0x0C Flags, Instance
assert _ATTR.size == 0x10
_RESIDENT = _struct.Struct("<IH")  # 0x10 ValueLength, ValueOffset
assert _RESIDENT.size == 6
_NONRESIDENT = _struct.Struct("<qq"  # 0x10 LowestVcn, HighestVcn
                              "H6x"  # 0x20 MappingPairsOffset, CompressionUnit + Reserved
                              "qqq")  # 0x28 AllocatedLength, FileSize, ValidDataLength
assert _NONRESIDENT.size == 0x30
ATTRIBUTE_FLAG_COMPRESSION_MASK = 0x00FF
ATTRIBUTE_FLAG_ENCRYPTED = 0x4000
ATTR_STANDARD_INFORMATION, ATTR_ATTRIBUTE_LIST, ATTR_FILE_NAME = 0x10, 0x20, 0x30
ATTR_DATA, ATTR_INDEX_ROOT, ATTR_INDEX_ALLOCATION, ATTR_REPARSE_POINT = 0x80, 0x90, 0xA0, 0xC0
ATTR_END = 0xFFFFFFFF

# FILE_NAME (the value of a $FILE_NAME attribute, and the key of an $I30 index entry)
_FILE_NAME = _struct.Struct("<Q"     # 0x00 ParentDirectory
                            "QQQQ"   # 0x08 CreationTime, LastModificationTime, LastChangeTime, LastAccessTime
                            "qq"     # 0x28 AllocatedLength, FileSize
                            "II"     # 0x38 FileAttributes, PackedEaSize / reparse tag
                            "BB")    # 0x40 FileNameLength (characters), Flags (namespace; 2 = DOS 8.3 alias)
assert _FILE_NAME.size == 0x42
FILE_ATTRIBUTE_REPARSE_POINT = 0x400
DUP_FILE_NAME_INDEX_PRESENT = 0x10000000  # FileAttributes of a folder's $FILE_NAME
FILE_NAME_DOS = 2
_SI_MODIFIED = _struct.Struct("<8xQ")  # STANDARD_INFORMATION: 0x08 LastModificationTime

# INDEX_ROOT, INDEX_HEADER, INDEX_ALLOCATION buffer ("INDX"), INDEX_ENTRY
_INDEX_ROOT = _struct.Struct("<IIIB3x")  # AttributeType (0x30), CollationRule, BytesPerIndexBuffer, ClustersPerIndexBuffer
assert _INDEX_ROOT.size == 0x10
_INDEX_HEADER = _struct.Struct("<IIIB3x")  # FirstIndexEntry, FirstFreeByte, BytesAvailable, Flags
assert _INDEX_HEADER.size == 0x10
_INDEX_BUFFER = _struct.Struct("<4sHHQq")  # MULTI_SECTOR_HEADER "INDX", Lsn, ThisBlock (VCN); INDEX_HEADER at 0x18
assert _INDEX_BUFFER.size == 0x18
_INDEX_ENTRY = _struct.Struct("<QHHH2x")  # FileReference, Length, AttributeLength (key), Flags
assert _INDEX_ENTRY.size == 0x10
INDEX_ENTRY_NODE, INDEX_ENTRY_END = 0x1, 0x2
SEGMENT_MASK = (1 << 48) - 1  # MFT_SEGMENT_REFERENCE: 48-bit segment number, 16-bit sequence number
MAX_INDEX_BUFFERS = 1 << 16  # a folder of a few million names; a hostile tree cannot loop past it
MAX_RUNS = 1 << 16
MAX_BLOCK = 64 * 1024  # MFT records and index buffers larger than this are left to dissect.ntfs
MAX_READ = 1 << 30  # one read() of a fast stream hands out at most this much


@dataclass
class _IndexName:
    """One name of a folder, as its $I30 index entry says (sizes as of the last rename)."""

    name: str
    segment: int
    is_dir: bool
    is_link: bool
    size: int
    mtime: datetime | None


@dataclass
class _RawRecord:
    """What the fast path needs of one base MFT record."""

    is_dir: bool
    is_link: bool
    name: str | None  # its first $FILE_NAME
    mtime: datetime | None  # $STANDARD_INFORMATION LastModificationTime
    data: tuple | None  # ("resident", bytes) or ("runs", runs, size, valid) for the unnamed $DATA
    attrs: dict  # type code -> [(name, resident value or None, non-resident fields or None, flags)]


def _filetime(value: int) -> datetime | None:
    from dissect.util.ts import wintimestamp

    try:
        return wintimestamp(value)
    except (ValueError, OverflowError, OSError):
        return None


def _apply_fixups(buf: bytearray, magic: bytes) -> bool:
    """Check and undo the update sequence array of a FILE or INDX block; False when torn."""
    if len(buf) < 8 or buf[:4] != magic:
        return False
    usa_offset, usa_count = _struct.unpack_from("<HH", buf, 4)
    sectors = len(buf) // SEQUENCE_NUMBER_STRIDE
    if usa_count != sectors + 1 or usa_offset < 8 or usa_offset + 2 * usa_count > len(buf):
        return False
    check = buf[usa_offset:usa_offset + 2]
    for i in range(sectors):
        end = (i + 1) * SEQUENCE_NUMBER_STRIDE
        if buf[end - 2:end] != check:
            return False
        buf[end - 2:end] = buf[usa_offset + 2 * (i + 1):usa_offset + 2 * (i + 2)]
    return True


def _mapping_pairs(buf: bytes, offset: int, end: int, lowest: int, highest: int) -> list | None:
    """[(vcn, lcn or None for a sparse run, clusters)] covering VCNs lowest..highest, or None."""
    runs, vcn, lcn = [], lowest, 0
    while offset < end and buf[offset] != 0:
        header = buf[offset]
        len_size, off_size = header & 0xF, header >> 4
        offset += 1
        if len_size == 0 or len_size > 8 or off_size > 8 or offset + len_size + off_size > end or len(runs) >= MAX_RUNS:
            return None
        count = int.from_bytes(buf[offset:offset + len_size], "little", signed=True)
        offset += len_size
        if count <= 0:
            return None
        if off_size:
            lcn += int.from_bytes(buf[offset:offset + off_size], "little", signed=True)
            if lcn < 0:
                return None
            runs.append((vcn, lcn, count))
        else:
            runs.append((vcn, None, count))
        offset += off_size
        vcn += count
    return runs if vcn == highest + 1 else None


class _RawNtfs:
    """Reads MFT records and $I30 indexes of a volume opened by dissect.ntfs (its geometry and
    streams), for NtfsFS. Every method answers None when the structure is not the plain case."""

    def __init__(self, ntfs) -> None:
        self.ntfs = ntfs
        self.cluster = ntfs.cluster_size
        self.record_size = ntfs._record_size
        self.index_size = ntfs._index_size
        self.volume = ntfs.fh
        self.volume_size = ntfs.fh.seek(0, 2)

    def read_volume(self, offset: int, size: int) -> bytes | None:
        if offset < 0 or offset + size > self.volume_size:
            return None
        self.volume.seek(offset)
        data = self.volume.read(size)
        return data if len(data) == size else None

    def _segment(self, segment: int, base: int) -> tuple[bool, list] | None:
        """(is a folder, [(type code, name, resident value, non-resident piece, flags)]) of one
        in-use MFT record: the base record (``base`` 0) or an extension record of ``base``."""
        if not 0 < self.record_size <= MAX_BLOCK:
            return None
        try:
            mft = self.ntfs.mft.fh
            mft.seek(segment * self.record_size)
            buf = bytearray(mft.read(self.record_size))
        except Exception:  # dissect's runlist stream on a damaged $MFT: the dissect path says what is wrong
            return None
        if len(buf) != self.record_size or not _apply_fixups(buf, b"FILE"):
            return None
        (_sig, _uo, _uc, _lsn, _seq, _links, first, flags, used, _alloc, owner, _next) = _FRS.unpack_from(buf)
        if not flags & FILE_RECORD_SEGMENT_IN_USE or owner & SEGMENT_MASK != base or used > len(buf) or first < _FRS.size:
            return None
        attrs = []
        offset = first
        while True:
            if offset + 8 > used:
                return None
            code, length = _struct.unpack_from("<II", buf, offset)
            if code == ATTR_END:
                return bool(flags & FILE_FILE_NAME_INDEX_PRESENT), attrs
            if length < 0x18 or length % 8 or offset + length > used:
                return None
            _c, _l, form, name_len, name_off, aflags, _inst = _ATTR.unpack_from(buf, offset)
            if name_len and (name_off + 2 * name_len > length):
                return None
            name = bytes(buf[offset + name_off:offset + name_off + 2 * name_len]).decode("utf-16-le", "replace")
            if form == 0:
                vlen, voff = _RESIDENT.unpack_from(buf, offset + 0x10)
                if voff + vlen > length:
                    return None
                attrs.append((code, name, bytes(buf[offset + voff:offset + voff + vlen]), None, aflags))
            elif form == 1 and length >= 0x40:
                lowest, highest, mp_off, alloc, size, valid = _NONRESIDENT.unpack_from(buf, offset + 0x10)
                if lowest < 0 or highest < lowest - 1 or mp_off >= length:
                    return None
                runs = _mapping_pairs(buf, offset + mp_off, offset + length, lowest, highest)
                if runs is None:
                    return None
                attrs.append((code, name, None, (lowest, highest, runs, alloc, size, valid), aflags))
            else:
                return None
            offset += length

    def _attribute_list(self, value: bytes, base: int) -> list[int] | None:
        """The extension records an $ATTRIBUTE_LIST names (ATTRIBUTE_LIST_ENTRY: TypeCode u32,
        RecordLength u16, NameLength u8, NameOffset u8, LowestVcn i64, SegmentReference u64)."""
        segments, offset = [], 0
        while offset + 0x1A <= len(value):
            length = _struct.unpack_from("<H", value, offset + 4)[0]
            if length < 0x1A or offset + length > len(value):
                return None
            segment = _struct.unpack_from("<Q", value, offset + 0x10)[0] & SEGMENT_MASK
            if segment != base and segment not in segments:
                segments.append(segment)
            offset += length
        return segments if offset == len(value) and len(segments) < 256 else None

    def record(self, segment: int) -> _RawRecord | None:
        parsed = self._segment(segment, 0)
        if parsed is None:
            return None
        is_dir, pieces = parsed
        lists = [p for p in pieces if p[0] == ATTR_ATTRIBUTE_LIST]
        if lists:  # attributes spread over extension records: gather them
            if len(lists) != 1:
                return None
            value = lists[0][2]
            if value is None:  # a non-resident list: read from its own runs (bounded by the MFT record size)
                _low, _high, runs, _alloc, size, valid = lists[0][3]
                if size > 64 * self.record_size:
                    return None
                try:
                    value = _RunStream(self, ("runs", runs, size, valid), "$ATTRIBUTE_LIST").read(size)
                except OfflineFixError:
                    return None
            extensions = self._attribute_list(value, segment)
            for ext in extensions if extensions is not None else [None]:
                more = self._segment(ext, segment) if ext is not None else None
                if more is None:
                    return None
                pieces += more[1]
        attrs: dict = {}
        for code, name, value, nonres, aflags in pieces:
            if value is not None or nonres[0] == 0:
                attrs.setdefault(code, []).append([name, value, nonres, aflags])
        for entry in (e for v in attrs.values() for e in v if e[2] is not None):
            if not self._join_pieces(entry, pieces, code=next(c for c, v in attrs.items() if entry in v)):
                return None
        attrs = {code: [tuple(e) for e in v] for code, v in attrs.items()}
        data = None
        unnamed = [a for a in attrs.get(ATTR_DATA, ()) if a[0] == ""]
        if len(unnamed) > 1:
            return None
        if unnamed:
            _n, value, nonres, aflags = unnamed[0]
            if aflags & (ATTRIBUTE_FLAG_COMPRESSION_MASK | ATTRIBUTE_FLAG_ENCRYPTED):
                return None
            data = ("resident", value) if value is not None else ("runs",) + nonres
        name = None
        for _n, value, _nr, _f in attrs.get(ATTR_FILE_NAME, ())[:1]:
            if value is None or len(value) < _FILE_NAME.size:
                return None
            chars = value[0x40]
            name = value[0x42:0x42 + 2 * chars].decode("utf-16-le", "replace")
        mtime = None
        si = attrs.get(ATTR_STANDARD_INFORMATION)
        if si and si[0][1] is not None and len(si[0][1]) >= _SI_MODIFIED.size:
            mtime = _filetime(_SI_MODIFIED.unpack_from(si[0][1])[0])
        return _RawRecord(is_dir, ATTR_REPARSE_POINT in attrs, name, mtime, data, attrs)

    def _join_pieces(self, entry: list, pieces: list, code: int) -> bool:
        """Replace a non-resident attribute's first piece by (runs, size, valid) over all its pieces
        (an attribute list may split its mapping pairs over records, in VCN order)."""
        _lowest, highest, runs, alloc, size, valid = entry[2]
        runs = list(runs)
        rest = sorted((p[3] for p in pieces if p[0] == code and p[1] == entry[0] and p[3] is not None and p[3][0] > 0),
                      key=lambda piece: piece[0])
        for lowest, high, more, *_sizes in rest:
            if lowest != highest + 1:
                return False
            runs += more
            highest = high
        if not 0 <= valid <= size <= alloc or alloc > (highest + 1) * self.cluster:
            return False
        entry[2] = (runs, size, valid)
        return True

    def index(self, record: _RawRecord) -> list[_IndexName] | None:
        """Every name of a folder's $I30 index, walked from its root down the subnode pointers."""
        roots = [a for a in record.attrs.get(ATTR_INDEX_ROOT, ()) if a[0] == "$I30" and a[1] is not None]
        if len(roots) != 1 or len(roots[0][1]) < _INDEX_ROOT.size + _INDEX_HEADER.size:
            return None
        root = roots[0][1]
        _type, _coll, buffer_size, _cpb = _INDEX_ROOT.unpack_from(root)
        out: list[_IndexName] = []
        pending = self._entries(root, _INDEX_ROOT.size, out)
        if pending is None:
            return None
        if not pending:
            return out
        alloc = [a for a in record.attrs.get(ATTR_INDEX_ALLOCATION, ()) if a[0] == "$I30" and a[2] is not None]
        if (len(alloc) != 1 or buffer_size != self.index_size or buffer_size < self.cluster or buffer_size > MAX_BLOCK
                or buffer_size % SEQUENCE_NUMBER_STRIDE):
            return None  # small index buffers count their VCNs in sectors: dissect.ntfs handles those
        runs, size, _valid = alloc[0][2]
        seen = set()
        while pending:
            vcn = pending.pop()
            if vcn in seen or len(seen) >= MAX_INDEX_BUFFERS or vcn < 0 or vcn * self.cluster + buffer_size > size:
                return None
            seen.add(vcn)
            buf = self._index_buffer(runs, vcn, buffer_size)
            if buf is None:
                return None
            more = self._entries(buf, 0x18, out)
            if more is None:
                return None
            pending.extend(more)
        return out

    def _index_buffer(self, runs: list, vcn: int, size: int) -> bytearray | None:
        clusters = size // self.cluster
        data = bytearray()
        for first in range(vcn, vcn + clusters):
            lcn = next((lcn + first - v for v, lcn, n in runs if v <= first < v + n and lcn is not None), None)
            if lcn is None:
                return None
            chunk = self.read_volume(lcn * self.cluster, self.cluster)
            if chunk is None:
                return None
            data += chunk
        if not _apply_fixups(data, b"INDX") or _INDEX_BUFFER.unpack_from(data)[4] != vcn:
            return None
        return data

    @staticmethod
    def _entries(buf: bytes, header_at: int, out: list) -> list[int] | None:
        """Append the names of one index node; return the VCNs of its child nodes (None: damaged)."""
        first, in_use, _avail, _flags = _INDEX_HEADER.unpack_from(buf, header_at)
        offset, end = header_at + first, header_at + in_use
        if end > len(buf) or first < _INDEX_HEADER.size:
            return None
        children = []
        while True:
            if offset + _INDEX_ENTRY.size > end:
                return None
            ref, length, key_len, flags = _INDEX_ENTRY.unpack_from(buf, offset)
            if length < _INDEX_ENTRY.size or offset + length > end or length % 8:
                return None
            if flags & INDEX_ENTRY_NODE:
                if length < _INDEX_ENTRY.size + 8:
                    return None
                children.append(_struct.unpack_from("<q", buf, offset + length - 8)[0])
            if flags & INDEX_ENTRY_END:
                return children
            if key_len < _FILE_NAME.size or _INDEX_ENTRY.size + key_len > length:
                return None
            key = offset + _INDEX_ENTRY.size
            (_parent, _c, modified, _ch, _a, _alloc, size, attributes, _ea, chars, namespace) = _FILE_NAME.unpack_from(buf, key)
            if _FILE_NAME.size + 2 * chars > key_len:
                return None
            if namespace != FILE_NAME_DOS:
                name = bytes(buf[key + 0x42:key + 0x42 + 2 * chars]).decode("utf-16-le", "replace")
                out.append(_IndexName(name, ref & SEGMENT_MASK, bool(attributes & DUP_FILE_NAME_INDEX_PRESENT),
                                      bool(attributes & FILE_ATTRIBUTE_REPARSE_POINT), size, _filetime(modified)))
            offset += length


def _data_size(data: tuple) -> int:
    return len(data[1]) if data[0] == "resident" else data[2]


class _RunStream(ReadOnlyStream):
    """A read-only stream over the unnamed $DATA of a record read by _RawNtfs: resident bytes, or
    its data runs on the volume (sparse runs and bytes past ValidDataLength read as zeros)."""

    def __init__(self, raw: _RawNtfs, data: tuple, path: str) -> None:
        super().__init__()
        self.raw, self.path, self.pos = raw, path, 0
        if data[0] == "resident":
            self.resident, self.runs, self.size, self.valid = data[1], [], len(data[1]), len(data[1])
        else:
            self.resident, (self.runs, self.size, self.valid) = None, data[1:]

    def read(self, size: int | None = -1) -> bytes:
        n = self.size - self.pos if size is None or size < 0 else min(size, self.size - self.pos)
        if n <= 0:
            return b""
        if n > MAX_READ:
            raise Refused(f"{self.path}: one read of {n} bytes is more than the {MAX_READ} this reader hands out at once")
        if self.resident is not None:
            data = self.resident[self.pos:self.pos + n]
        else:
            data = self._read_runs(self.pos, n)
        self.pos += n
        return data

    def readall(self) -> bytes:
        return self.read(-1)

    def readinto(self, b) -> int:
        data = self.read(len(b))
        b[:len(data)] = data
        return len(data)

    def _read_runs(self, pos: int, n: int) -> bytes:
        cluster = self.raw.cluster
        out = bytearray()
        end = pos + n
        for vcn, lcn, count in self.runs:
            start, stop = vcn * cluster, (vcn + count) * cluster
            if stop <= pos or start >= end:
                continue
            a, z = max(pos, start), min(end, stop)
            if lcn is None:
                out += bytes(z - a)
                continue
            chunk = self.raw.read_volume(lcn * cluster + a - start, z - a)
            if chunk is None:
                raise FilesystemError(f"{self.path}: a data run points outside the volume", offset=lcn * cluster,
                                      field="$DATA mapping pairs")
            out += chunk
        if len(out) != n:
            raise FilesystemError(f"{self.path}: data runs cover {len(out)} of {n} bytes at {pos}", offset=pos,
                                  field="$DATA mapping pairs")
        if end > self.valid:  # past ValidDataLength a file reads as zeros
            cut = max(0, self.valid - pos)
            out[cut:] = bytes(n - cut)
        return bytes(out)
