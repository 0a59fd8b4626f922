"""Change a REGF hive in memory: values, keys, and a new empty hive; report every changed byte.

Specification: Maxim Suhanov, "Windows registry file format specification" (key node, key value,
key values list, subkeys lists, key security, big data; base block sequence numbers and
checksum). Layouts come from structures.py, reading from reader.py, cells from alloc.py.

    hive = Hive.open("SYSTEM", writable=True)      # a private bytearray copy
    w = HiveWriter(hive)                           # refuses a dirty hive (recover it first)
    w.set_value(r"ControlSet001\\Services\\foo", "Start", REG_DWORD, 4)
    commit = w.commit()                            # ranges (offset, old, new), sizes, grows

What Windows does and this writer does the same way:
- data of 4 bytes or less lives in the key value's Data field; more than 16,344 bytes in a big
  data record ("db", segments of 16,344 bytes) when the minor version is above 3; else one cell;
- subkey lists stay sorted by the uppercased name (character codes); new leaves are "lh" (minor
  5 and later; "lf" before), and a leaf above MAX_LEAF_ELEMENTS elements is split under an index
  root ("ri");
- a new key shares its parent's security cell ("sk", reference count + 1); the last reference
  to a security cell going away unlinks and frees it;
- a key whose value list or subkey list changes gets a new LastWriteTime, and its
  MaxNameLen / MaxValueNameLen / MaxValueDataLen grow when needed (they never shrink, as in
  Windows). Changing the data of an existing value does not touch its key node, so that a
  REG_DWORD changed in place changes only those data bytes (and the base block on commit);
- a commit increments both sequence numbers (equal again), sets the timestamp and recomputes the
  checksum of the base block.

Each public change is all or nothing: when it raises, every byte it wrote is put back.
"""

from __future__ import annotations

import struct
import time
from collections.abc import Callable, Iterable

from offline_fix.errors import NotFound, Refused
from offline_fix.hive.alloc import ByteRange, CellAllocator, Commit, TrackedBuffer, align
from offline_fix.hive.baseblock import FILE_TYPE_PRIMARY, HBIN_START, new_base_block
from offline_fix.hive.errors import CellError, DirtyHive
from offline_fix.hive.reader import Hive, Key, KeyNotFound, fold_name
from offline_fix.hive.structures import (
    BIG_DATA,
    BIG_DATA_SEGMENT,
    BIG_DATA_THRESHOLD,
    CELL_HEADER_SIZE,
    DATA_INLINE,
    DB_SIGNATURE,
    HBIN_ALIGN,
    HBIN_HEADER,
    HBIN_SIGNATURE,
    KEY_COMP_NAME,
    KEY_HIVE_ENTRY,
    KEY_NO_DELETE,
    KEY_NODE,
    KEY_SECURITY,
    KEY_VALUE,
    LF_SIGNATURE,
    LH_SIGNATURE,
    LI_SIGNATURE,
    LIST_HEADER,
    MAX_LEAF_ELEMENTS,
    NK_OFF_LAST_WRITE,
    NK_OFF_MAX_NAME,
    NK_OFF_MAX_VALUE_DATA,
    NK_OFF_MAX_VALUE_NAME,
    NK_OFF_NAME,
    NK_OFF_SUBKEY_COUNT,
    NK_OFF_SUBKEY_LIST,
    NK_OFF_VALUE_COUNT,
    NK_SIGNATURE,
    NO_CELL,
    REG_DWORD,
    REG_DWORD_BIG_ENDIAN,
    REG_EXPAND_SZ,
    REG_LINK,
    REG_MULTI_SZ,
    REG_QWORD,
    REG_SZ,
    RI_SIGNATURE,
    SK_SIGNATURE,
    VALUE_COMP_NAME,
    VK_OFF_DATA,
    VK_OFF_DATA_LENGTH,
    VK_SIGNATURE,
    type_name,
)

__all__ = [
    "HiveWriter", "ByteRange", "Commit", "WriteRefused", "BadValueData", "ValueNotFound",
    "encode_data", "new_hive", "MAX_DATA_SIZE", "MAX_KEY_NAME", "MAX_VALUE_NAME",
]

# Limits, as Windows documents them ("Registry element size limits"): key names 255 characters,
# value names 16,383 characters, a tree 512 levels deep. Value data: Windows allows "available
# memory"; we cap it at 1 MiB by default (HiveWriter(max_data_size=...) to change).
MAX_KEY_NAME = 255
MAX_VALUE_NAME = 16383
MAX_DEPTH = 512
MAX_DATA_SIZE = 1 << 20

_U32 = struct.Struct("<I")
_U64 = struct.Struct("<Q")
_BE32 = struct.Struct(">I")
_LEAF_STEP = {LI_SIGNATURE: 1, LF_SIGNATURE: 2, LH_SIGNATURE: 2}  # u32 words per element
_CELL = HBIN_START + CELL_HEADER_SIZE  # file offset of a cell's data = cell offset + this
_SK_OFF_REFS = 12  # KEY_SECURITY ReferenceCount
_SK_OFF_FLINK, _SK_OFF_BLINK = 4, 8


class WriteRefused(Refused):
    """A change the writer will not make: a limit, a protected key, a key that is not empty."""


class BadValueData(WriteRefused):
    """Value data that does not match its type (a 3-byte REG_DWORD, a REG_SZ without its NUL)."""


class ValueNotFound(NotFound):
    """A value name that the key does not hold."""


# -- value data ------------------------------------------------------------------------------------
def _bad(type_: int, message: str, *, expected=None, found=None) -> BadValueData:
    return BadValueData(f"{type_name(type_)}: {message}", field="data", expected=expected, found=found)


def _utf16z(text: str, type_: int) -> bytes:
    if "\x00" in text:
        raise _bad(type_, "a string may not contain NUL", found=text)
    return text.encode("utf-16-le", "surrogatepass")


def encode_data(type_: int, data) -> bytes:
    """The bytes to store for ``data`` of registry type ``type_``, checked against the type.

    str for REG_SZ / REG_EXPAND_SZ (a NUL is added) and REG_LINK (stored without one); a list of
    str for REG_MULTI_SZ; int for REG_DWORD, REG_DWORD_BIG_ENDIAN and REG_QWORD; bytes for any
    type, checked: REG_DWORD 4 bytes, REG_QWORD 8, REG_SZ an even length ending in a UTF-16 NUL,
    REG_MULTI_SZ ending in two, REG_LINK an even length.
    """
    if not isinstance(type_, int) or isinstance(type_, bool) or not 0 <= type_ <= 0xFFFFFFFF:
        raise BadValueData("value type must be a 32-bit unsigned number", field="type", found=type_)
    if isinstance(data, (bytes, bytearray, memoryview)):
        raw = bytes(data)
        _check_raw(type_, raw)
        return raw
    if type_ in (REG_SZ, REG_EXPAND_SZ) and isinstance(data, str):
        return _utf16z(data, type_) + b"\x00\x00"
    if type_ == REG_LINK and isinstance(data, str):
        return _utf16z(data, type_)
    if type_ == REG_MULTI_SZ and isinstance(data, (list, tuple)):
        if not all(isinstance(s, str) for s in data):
            raise _bad(type_, "every item must be a string", found=data)
        if any(s == "" for s in data):
            raise _bad(type_, "an empty string would end the list early", found=data)
        return b"".join(_utf16z(s, type_) + b"\x00\x00" for s in data) + b"\x00\x00"
    if type_ in (REG_DWORD, REG_DWORD_BIG_ENDIAN, REG_QWORD) and isinstance(data, int) \
            and not isinstance(data, bool):
        bits = 64 if type_ == REG_QWORD else 32
        if not 0 <= data < 1 << bits:
            raise _bad(type_, f"number out of range for {bits} bits", expected=f"0..{(1 << bits) - 1}", found=data)
        return (_U64 if type_ == REG_QWORD else _BE32 if type_ == REG_DWORD_BIG_ENDIAN else _U32).pack(data)
    raise _bad(type_, f"cannot store a {type(data).__name__} in this type", found=data)


def _check_raw(type_: int, raw: bytes) -> None:
    if type_ in (REG_DWORD, REG_DWORD_BIG_ENDIAN) and len(raw) != 4:
        raise _bad(type_, "must be exactly 4 bytes", expected=4, found=len(raw))
    if type_ == REG_QWORD and len(raw) != 8:
        raise _bad(type_, "must be exactly 8 bytes", expected=8, found=len(raw))
    if type_ in (REG_SZ, REG_EXPAND_SZ, REG_LINK, REG_MULTI_SZ) and len(raw) % 2:
        raise _bad(type_, "UTF-16 data must have an even length", found=len(raw))
    if type_ in (REG_SZ, REG_EXPAND_SZ) and not raw.endswith(b"\x00\x00"):
        raise _bad(type_, "must end with a UTF-16 NUL", expected="...0000", found=raw[-4:].hex())
    if type_ == REG_MULTI_SZ and raw != b"\x00\x00" and not (len(raw) >= 4 and raw.endswith(bytes(4))):
        raise _bad(type_, "must end with two UTF-16 NULs", expected="...00000000", found=raw[-4:].hex())


# -- names -----------------------------------------------------------------------------------------
def _encode_name(name: str) -> tuple[bytes, bool]:
    """(stored bytes, compressed): Latin-1 when every character fits in a byte, as Windows does."""
    try:
        return name.encode("latin-1"), True
    except UnicodeEncodeError:
        return name.encode("utf-16-le", "surrogatepass"), False


def _sort_key(name: str) -> bytes:
    """Subkey lists are sorted by the uppercased name, compared by UTF-16 character codes."""
    return fold_name(name).encode("utf-16-be", "surrogatepass")


def _lh_hash(name: str) -> int:
    """The "lh" hash: H = 37 * H + C over the UTF-16 code units of the uppercased name."""
    folded = fold_name(name).encode("utf-16-le", "surrogatepass")
    units = struct.unpack(f"<{len(folded) // 2}H", folded)
    h = 0
    for unit in units:
        h = (h * 37 + unit) & 0xFFFFFFFF
    return h


def _lf_hint(name: str) -> int:
    """The "lf" name hint: the first 4 characters as bytes, zero-padded; zero when one of them
    does not fit in a byte."""
    try:
        hint = name[:4].encode("latin-1")
    except UnicodeEncodeError:
        return 0
    return _U32.unpack(hint.ljust(4, b"\x00"))[0]


def _lf_hints(name: str) -> frozenset[int]:
    """Every "lf" name hint an ASCII ``name`` may have been stored with: its first 4 characters
    in any case (Windows keeps the case as written), zero-padded."""
    variants = [b""]
    for ch in name[:4]:
        variants = [v + c.encode("ascii") for v in variants for c in {ch.lower(), ch.upper()}]
    return frozenset(_U32.unpack(v.ljust(4, b"\x00"))[0] for v in variants)


def _hint_matches(sig: bytes, word: int, wanted) -> bool:
    """Whether a list element's hash ("lh") or name hint ("lf") may belong to the ASCII name
    whose hash or possible hints are ``wanted``. An "lf" hint starting with a zero byte (the
    name did not fit in bytes) proves nothing and matches."""
    if sig == LH_SIGNATURE:
        return word == wanted
    return word in wanted or not word & 0xFF


def _check_key_name(name: str) -> None:
    if not name or "\\" in name or "\x00" in name:
        raise WriteRefused("a key name must be non-empty and hold no backslash or NUL", field="name", found=name)
    if len(name) > MAX_KEY_NAME:
        raise WriteRefused("key name too long", field="name", expected=f"<= {MAX_KEY_NAME} characters",
                           found=len(name))


def _utf16_len(name: str) -> int:
    """Length in bytes of ``name`` as UTF-16 (what the Max*NameLen fields count)."""
    return len(name.encode("utf-16-le", "surrogatepass"))


def _split(path: str) -> list[str]:
    return [part for part in path.split("\\") if part]


# -- security descriptor for a new hive -----------------------------------------------------------
def _sid(authority: int, *subs: int) -> bytes:
    return struct.pack(f"<BB6s{len(subs)}I", 1, len(subs), authority.to_bytes(6, "big"), *subs)


def _default_security_descriptor() -> bytes:
    """Self-relative SECURITY_DESCRIPTOR: owner Administrators, group SYSTEM, a DACL giving
    SYSTEM and Administrators full control and Users read access, inherited by subkeys."""
    system, admins, users = _sid(5, 18), _sid(5, 32, 544), _sid(5, 32, 545)
    aces = b""
    for mask, sid in ((0xF003F, system), (0xF003F, admins), (0x20019, users)):
        # ACCESS_ALLOWED_ACE: type 0, flags OBJECT_INHERIT | CONTAINER_INHERIT, size, mask, SID
        aces += struct.pack("<BBHI", 0, 0x03, 8 + len(sid), mask) + sid
    acl = struct.pack("<BBHHH", 2, 0, 8 + len(aces), 3, 0) + aces
    header = struct.Struct("<BBHIIII")  # Revision, Sbz1, Control, Owner, Group, Sacl, Dacl
    owner_at = header.size + len(acl)
    group_at = owner_at + len(admins)
    # Control: SE_SELF_RELATIVE (0x8000) | SE_DACL_PRESENT (0x0004)
    return header.pack(1, 0, 0x8004, owner_at, group_at, 0, header.size) + acl + admins + system


# -- the writer ------------------------------------------------------------------------------------
def _now_filetime() -> int:
    return time.time_ns() // 100 + 116444736000000000


class HiveWriter:
    """Changes one writable, clean ``Hive`` in place (``hive.buf``); ``commit`` reports them."""

    def __init__(self, hive: Hive, *, clock: Callable[[], int] | None = None,
                 max_data_size: int = MAX_DATA_SIZE) -> None:
        if not isinstance(hive, Hive):
            raise TypeError("HiveWriter needs an offline_fix.hive.Hive")
        if not hive.writable:
            raise WriteRefused("the hive was opened read-only: open it with writable=True", path=hive.path)
        if hive.tolerant:
            raise WriteRefused("a hive opened in tolerant mode is never written", path=hive.path)
        block = hive.base_block
        if hive.dirty:
            raise DirtyHive(
                "the hive is dirty (its transaction logs hold changes not in the primary file): "
                "recover it first (offline-fix hive recover)", path=hive.path, field="Sequence",
                expected="equal sequence numbers and a good checksum",
                found=f"{block.sequence1}/{block.sequence2}, checksum {'ok' if block.checksum_ok else 'bad'}")
        if block.file_type != FILE_TYPE_PRIMARY:
            raise WriteRefused("not a primary hive file (a transaction log?)", path=hive.path,
                               field="Type", expected=FILE_TYPE_PRIMARY, found=block.file_type)
        self.hive = hive
        self.max_data_size = max_data_size
        self._clock = clock or _now_filetime
        self._tb = TrackedBuffer(hive.buf)
        self._alloc = CellAllocator(self._tb, hive, on_grow=self._grown)
        self._big_data = hive.minor > 3
        self._committed = self._alloc.mark()  # the bins as of the last commit

    # -- batches ---------------------------------------------------------------------------------
    @property
    def pending(self) -> bool:
        """True when changes were made since the last commit."""
        return self._tb.pending

    def _atomic(self, fn, *args):
        marks = self._tb.mark(), self._alloc.mark()
        try:
            return fn(*args)
        except BaseException:
            if self._tb.mark() != marks[0]:
                self._tb.rollback(marks[0])
                self._alloc.rollback(marks[1])
                self.hive.invalidate()
            raise

    def commit(self) -> Commit:
        """Finish the batch: update the base block (sequence numbers + 1, timestamp, hive bins
        size, checksum) and return every byte range changed since the last commit.
        ``hive.buf`` then holds the new file and the reader sees it. Nothing changed: no ranges."""
        if not self._tb.pending:
            return self._tb.take()
        block = self.hive.base_block
        seq = (block.sequence2 + 1) & 0xFFFFFFFF
        block = block.updated(sequence1=seq, sequence2=seq, timestamp=self._clock(),
                              hive_bins_size=self._alloc.bins_size)
        self._tb.write(0, block.to_bytes())
        commit = self._tb.take()
        self.hive.invalidate()
        self._committed = self._alloc.mark()
        return commit

    def _grown(self, bins_size: int) -> None:
        """A bin was appended: record the new size in the base block now (checksum kept right,
        sequence numbers untouched until commit) so that the reader bounds cells by it."""
        self._tb.write(0, self.hive.base_block.updated(hive_bins_size=bins_size).to_bytes())
        self.hive.invalidate()

    def discard(self) -> None:
        """Forget every change since the last commit (``hive.buf`` back as it was)."""
        self._tb.rollback()
        self._alloc.rollback(self._committed)
        self.hive.invalidate()

    # -- cell helpers ----------------------------------------------------------------------------
    def _put(self, cell: int, at: int, data: bytes) -> None:
        """Write ``data`` at byte ``at`` of the data of cell ``cell``, inside that cell."""
        if at + len(data) > self._alloc.capacity(cell):
            raise CellError("write past the end of a cell", offset=_CELL + cell, field="cell",
                            expected=f"<= {self._alloc.capacity(cell)}", found=at + len(data))
        self._tb.write(_CELL + cell + at, data)

    def _put_u32(self, cell: int, at: int, value: int) -> None:
        self._put(cell, at, _U32.pack(value))

    def _u32(self, cell: int, at: int) -> int:
        return _U32.unpack_from(self._tb.buf, _CELL + cell + at)[0]

    def _new_cell(self, data: bytes, room: int = 0) -> int:
        cell = self._alloc.allocate(len(data) + room)
        self._tb.write(_CELL + cell, data)
        return cell

    def _signature(self, cell: int, what: str, expected: Iterable[bytes]) -> bytes:
        start, _end = self.hive.cell(cell, what)
        sig = bytes(self._tb.buf[start:start + 2])
        if sig not in expected:
            raise CellError(f"cell {cell:#x} is not a {what}", offset=start, field="Signature",
                            expected=b"/".join(expected), found=sig)
        return sig

    def _touch(self, key_cell: int) -> None:
        self._put(key_cell, NK_OFF_LAST_WRITE, _U64.pack(self._clock()))

    def _grow_field(self, key_cell: int, at: int, value: int, mask: int = 0xFFFFFFFF) -> None:
        """Raise a Max* field of a key node to ``value`` when it is smaller (bits outside
        ``mask`` are kept)."""
        old = self._u32(key_cell, at)
        if value > old & mask:
            self._put_u32(key_cell, at, (old & ~mask & 0xFFFFFFFF) | min(value, mask))

    # -- values ----------------------------------------------------------------------------------
    def set_value(self, key_path: str, name: str, type_: int, data) -> None:
        """Create or replace the value ``name`` ("" is the default value) of the key at
        ``key_path``. ``data`` is checked against ``type_`` (see encode_data)."""
        raw = encode_data(type_, data)
        if len(raw) > self.max_data_size:
            raise WriteRefused("value data too large", field="data", expected=f"<= {self.max_data_size} bytes",
                               found=len(raw))
        if not isinstance(name, str) or len(name) > MAX_VALUE_NAME:
            raise WriteRefused("value name too long or not a string", field="name",
                               expected=f"<= {MAX_VALUE_NAME} characters", found=len(name) if isinstance(name, str) else name)
        self._atomic(self._set_value, key_path, name, type_, raw)

    def _set_value(self, key_path: str, name: str, type_: int, raw: bytes) -> None:
        key = self._resolve(key_path)
        value = key.value(name)
        if value is None:
            self._add_value(key, name, type_, raw)
            return
        vk = value.offset
        old_len = self._u32(vk, VK_OFF_DATA_LENGTH)
        old_data = self._u32(vk, VK_OFF_DATA)
        new_len, new_data = self._store_data(raw, old_len, old_data)
        self._put(vk, VK_OFF_DATA_LENGTH, struct.pack("<III", new_len, new_data, type_))
        self._grow_field(key.offset, NK_OFF_MAX_VALUE_DATA, len(raw))

    def _add_value(self, key: Key, name: str, type_: int, raw: bytes) -> None:
        name_raw, compressed = _encode_name(name)
        length, data = self._store_data(raw, None, None)
        vk = self._new_cell(KEY_VALUE.pack(VK_SIGNATURE, len(name_raw), length, data, type_,
                                           VALUE_COMP_NAME if compressed else 0, 0) + name_raw)
        count = key.value_count
        values = list(self.hive.cell_list(key.value_list_offset, count, "value list")) if count else []
        list_cell = self._write_list(key.value_list_offset if count else None, b"", values + [vk], 1, len(values))
        self._put(key.offset, NK_OFF_VALUE_COUNT, struct.pack("<II", count + 1, list_cell))
        self._grow_field(key.offset, NK_OFF_MAX_VALUE_NAME, _utf16_len(name))
        self._grow_field(key.offset, NK_OFF_MAX_VALUE_DATA, len(raw))
        self._touch(key.offset)

    def delete_value(self, key_path: str, name: str) -> None:
        """Delete the value ``name`` of the key at ``key_path`` (ValueNotFound when absent)."""
        self._atomic(self._delete_value, key_path, name)

    def _delete_value(self, key_path: str, name: str) -> None:
        key = self._resolve(key_path)
        value = key.value(name)
        if value is None:
            raise ValueNotFound(f"value not found: {name!r} in {key.path or '(root)'!r}", path=key_path)
        values = list(self.hive.cell_list(key.value_list_offset, key.value_count, "value list"))
        index = values.index(value.offset)
        del values[index]
        if values:
            list_cell = self._write_list(key.value_list_offset, b"", values, 1, index)
        else:
            self._alloc.free(key.value_list_offset, "value list")
            list_cell = NO_CELL
        self._put(key.offset, NK_OFF_VALUE_COUNT, struct.pack("<II", len(values), list_cell))
        self._free_value(value.offset)
        self._touch(key.offset)

    def _data_cells(self, length: int, data: int) -> list[int]:
        """Cells holding a value's data (the db record, its segment list and segments)."""
        if length & DATA_INLINE or length == 0:
            return []
        if length > BIG_DATA_THRESHOLD and self._big_data:
            self._signature(data, "big data", (DB_SIGNATURE,))
            _sig, count, seg_list = BIG_DATA.unpack_from(self._tb.buf, _CELL + data)
            return [data, seg_list, *self.hive.cell_list(seg_list, count, "big data segment list")]
        return [data]

    def _store_data(self, raw: bytes, old_len: int | None, old_data: int | None) -> tuple[int, int]:
        """Store ``raw`` for a value, reusing its current cells when the data fits them; free the
        cells no longer used. Returns the vk's (DataLength, Data) fields."""
        old_cells = [] if old_len is None else self._data_cells(old_len, old_data)
        reused = False
        if len(raw) <= 4:
            fields = (len(raw) | DATA_INLINE, _U32.unpack(raw.ljust(4, b"\x00"))[0])
        elif len(raw) > BIG_DATA_THRESHOLD and self._big_data:
            reused = self._reuse_big(raw, old_len, old_cells)
            fields = (len(raw), old_cells[0] if reused else self._store_big(raw))
        elif len(old_cells) == 1 and self._alloc.capacity(old_cells[0], "value data") >= len(raw):
            self._put(old_cells[0], 0, raw)
            reused = True
            fields = (len(raw), old_cells[0])
        else:
            fields = (len(raw), self._new_cell(raw))
        for cell in () if reused else old_cells:
            self._alloc.free(cell, "value data")
        return fields

    @staticmethod
    def _chunks(raw: bytes) -> list[bytes]:
        return [raw[i:i + BIG_DATA_SEGMENT] for i in range(0, len(raw), BIG_DATA_SEGMENT)]

    def _reuse_big(self, raw: bytes, old_len: int | None, old_cells: list[int]) -> bool:
        """Write big data into the segments of the old big data record when they hold it."""
        chunks = self._chunks(raw)
        if old_len is None or old_len & DATA_INLINE or old_len <= BIG_DATA_THRESHOLD \
                or len(old_cells) != 2 + len(chunks) \
                or any(self._alloc.capacity(c) < len(d) for c, d in zip(old_cells[2:], chunks)):
            return False
        for cell, chunk in zip(old_cells[2:], chunks):
            self._put(cell, 0, chunk)
        return True

    def _store_big(self, raw: bytes) -> int:
        # every segment cell is allocated whole (16,344 bytes and 4 of padding: 16,352 with its
        # header) as Windows does, the last one too; hivex reads a segment as its cell minus 8
        segments = [self._new_cell(chunk, room=BIG_DATA_SEGMENT + 4 - len(chunk)) for chunk in self._chunks(raw)]
        seg_list = self._new_cell(struct.pack(f"<{len(segments)}I", *segments))
        return self._new_cell(BIG_DATA.pack(DB_SIGNATURE, len(segments), seg_list))

    def _free_value(self, vk: int) -> None:
        self._signature(vk, "key value", (VK_SIGNATURE,))
        for cell in self._data_cells(self._u32(vk, VK_OFF_DATA_LENGTH), self._u32(vk, VK_OFF_DATA)):
            self._alloc.free(cell, "value data")
        self._alloc.free(vk, "key value")

    def _write_list(self, cell: int | None, header: bytes, words: list[int], step: int, first: int) -> int:
        """Write a list cell (``header`` then u32 ``words``) in place when it fits, else in a new
        cell (the old one freed). Only words from element ``first`` on are rewritten in place."""
        size = len(header) + 4 * len(words)
        if cell is not None and self._alloc.capacity(cell, "list") >= size:
            self._put(cell, 0, header)
            at = len(header) + 4 * step * first
            self._put(cell, at, struct.pack(f"<{len(words) - step * first}I", *words[step * first:]))
            return cell
        if cell is None:
            return self._new_cell(header + struct.pack(f"<{len(words)}I", *words))
        # a list that grew: free it first (its space may join the new cell) and leave room for
        # more elements, so that adding many keys or values does not move the list every time
        self._alloc.free(cell, "list")
        return self._new_cell(header + struct.pack(f"<{len(words)}I", *words), room=size // 4)

    # -- keys ------------------------------------------------------------------------------------
    def create_key(self, key_path: str) -> bool:
        """Create the key at ``key_path`` and any missing parent; False when it already exists."""
        parts = _split(key_path)
        for part in parts:
            _check_key_name(part)
        if len(parts) > MAX_DEPTH:
            raise WriteRefused("key path too deep", field="path", expected=f"<= {MAX_DEPTH} levels", found=len(parts))
        return self._atomic(self._create_key, parts)

    def _create_key(self, parts: list[str]) -> bool:
        key = self.hive.root
        created = False
        for part in parts:
            child = self._find_child(key, part)
            if child is None:
                key = self._add_subkey(key, part)
                created = True
            else:
                key = Key(self.hive, child, key)
        return created

    def _resolve(self, key_path: str) -> Key:
        """The key at ``key_path`` (case-insensitive), found through the subkey lists' hashes."""
        key = self.hive.root
        for part in _split(key_path):
            child = self._find_child(key, part)
            if child is None:
                raise KeyNotFound(f"key not found: {part!r} under {key.path or '(root)'!r}", path=key_path)
            key = Key(self.hive, child, key)
        return key

    def _find_child(self, parent: Key, name: str) -> int | None:
        """Cell offset of the subkey called ``name`` (compared as Windows does), or None. In an
        "lh" leaf only the keys whose hash matches are read (for an ASCII name, whose hash is
        certain); elsewhere every subkey's name is compared."""
        if parent.subkey_count == 0:
            return None
        want = fold_name(name)
        ascii_name = name.isascii()
        wanted = {LH_SIGNATURE: _lh_hash(name), LF_SIGNATURE: _lf_hints(name)} if ascii_name else {}
        found = []
        for leaf in self._subkey_leaves(parent)[1]:
            sig, words = self._leaf_words(leaf)
            step = _LEAF_STEP[sig]
            check = wanted.get(sig)
            for i in range(0, len(words), step):
                if check is not None and not _hint_matches(sig, words[i + 1], check):
                    continue
                if fold_name(Key(self.hive, words[i], None).name) == want:
                    found.append(words[i])
        if len(found) > 1:  # a damaged hive: which one would Windows change?
            raise CellError(f"key {parent.path or '(root)'!r} lists {len(found)} subkeys named {name!r}",
                            offset=_CELL + parent.offset, field="subkey list", expected=1, found=len(found))
        return found[0] if found else None

    def _subkey_leaves(self, parent: Key) -> tuple[bool, list[int]]:
        """(whether the list is an index root, its leaves) of a key with subkeys."""
        root = parent.subkey_list_offset
        if self._signature(root, "subkey list", (RI_SIGNATURE, *_LEAF_STEP)) == RI_SIGNATURE:
            return True, self._leaves(root)
        return False, [root]

    def _add_subkey(self, parent: Key, name: str) -> Key:
        sk = parent.security_offset
        self._signature(sk, "key security", (SK_SIGNATURE,))
        self._put_u32(sk, _SK_OFF_REFS, self._u32(sk, _SK_OFF_REFS) + 1)
        name_raw, compressed = _encode_name(name)
        nk = self._new_cell(KEY_NODE.pack(
            NK_SIGNATURE, KEY_COMP_NAME if compressed else 0, self._clock(), 0, parent.offset, 0, 0,
            NO_CELL, NO_CELL, 0, NO_CELL, sk, NO_CELL, 0, 0, 0, 0, 0, len(name_raw), 0) + name_raw)
        self._insert_subkey(parent, nk, name)
        self._put_u32(parent.offset, NK_OFF_SUBKEY_COUNT, parent.subkey_count + 1)
        self._grow_field(parent.offset, NK_OFF_MAX_NAME, _utf16_len(name), 0xFFFF)
        self._touch(parent.offset)
        return Key(self.hive, nk, parent)

    def delete_key(self, key_path: str, recursive: bool = False) -> None:
        """Delete the key at ``key_path``; with ``recursive`` also every key below it (else a key
        with subkeys is refused). The root and keys flagged KEY_NO_DELETE are refused."""
        self._atomic(self._delete_key, key_path, recursive)

    def _delete_key(self, key_path: str, recursive: bool) -> None:
        key = self._resolve(key_path)
        if not _split(key_path) or key.flags & (KEY_HIVE_ENTRY | KEY_NO_DELETE):
            raise WriteRefused("this key may not be deleted (root or KEY_NO_DELETE)", path=key_path,
                               field="Flags", found=f"{key.flags:#x}")
        if key.subkey_count and not recursive:
            raise WriteRefused(f"key has {key.subkey_count} subkeys (delete them first, or recursively)",
                               path=key_path, field="SubKeyCounts", expected=0, found=key.subkey_count)
        parent = self._resolve("\\".join(_split(key_path)[:-1]))
        doomed = list(key.walk())
        for node in reversed(doomed):
            self._free_key(node)
        self._remove_subkey(parent, key.offset)
        self._put_u32(parent.offset, NK_OFF_SUBKEY_COUNT, parent.subkey_count - 1)
        self._touch(parent.offset)

    def _free_key(self, key: Key) -> None:
        for value in list(self.hive.cell_list(key.value_list_offset, key.value_count, "value list")
                          if key.value_count else ()):
            self._free_value(value)
        if key.value_count:
            self._alloc.free(key.value_list_offset, "value list")
        if key.subkey_count:
            root = key.subkey_list_offset
            if self._signature(root, "subkey list", (RI_SIGNATURE, *_LEAF_STEP)) == RI_SIGNATURE:
                for leaf in self._leaves(root):
                    self._alloc.free(leaf, "subkey list")
            self._alloc.free(root, "subkey list")
        if key.class_offset != NO_CELL and key.class_length:
            self._alloc.free(key.class_offset, "class name")
        self._release_security(key.security_offset)
        self._alloc.free(key.offset, "key node")

    def _release_security(self, sk: int) -> None:
        self._signature(sk, "key security", (SK_SIGNATURE,))
        refs = self._u32(sk, _SK_OFF_REFS)
        if refs > 1:
            self._put_u32(sk, _SK_OFF_REFS, refs - 1)
            return
        flink, blink = self._u32(sk, _SK_OFF_FLINK), self._u32(sk, _SK_OFF_BLINK)
        if flink != sk:
            self._signature(flink, "key security", (SK_SIGNATURE,))
            self._signature(blink, "key security", (SK_SIGNATURE,))
            self._put_u32(blink, _SK_OFF_FLINK, flink)
            self._put_u32(flink, _SK_OFF_BLINK, blink)
        self._alloc.free(sk, "key security")

    # -- subkey lists ----------------------------------------------------------------------------
    def _leaves(self, ri: int) -> list[int]:
        count = LIST_HEADER.unpack_from(self._tb.buf, _CELL + ri)[1]
        leaves = list(self.hive.cell_list(ri, count, "index root", header=LIST_HEADER.size))
        if len(set(leaves)) != len(leaves) or ri in leaves:
            raise CellError(f"index root {ri:#x} lists a cell twice", offset=_CELL + ri, field="ri")
        for leaf in leaves:
            self._signature(leaf, "subkey list", tuple(_LEAF_STEP))
        return leaves

    def _leaf_words(self, leaf: int) -> tuple[bytes, list[int]]:
        """(signature, u32 words of the elements) of a leaf (li: offsets; lf/lh: offset, hint)."""
        sig = self._signature(leaf, "subkey list", tuple(_LEAF_STEP))
        count = LIST_HEADER.unpack_from(self._tb.buf, _CELL + leaf)[1]
        step = _LEAF_STEP[sig]
        words = self.hive.cell_list(leaf, count * step, "subkey list", header=LIST_HEADER.size)
        return sig, list(words)

    def _write_leaf(self, leaf: int | None, sig: bytes, words: list[int], first: int) -> int:
        step = _LEAF_STEP[sig]
        return self._write_list(leaf, LIST_HEADER.pack(sig, len(words) // step), words, step, first)

    def _name_key(self, nk: int) -> bytes:
        return _sort_key(Key(self.hive, nk, None).name)

    def _element(self, sig: bytes, nk: int, name: str) -> list[int]:
        if sig == LI_SIGNATURE:
            return [nk]
        return [nk, _lh_hash(name) if sig == LH_SIGNATURE else _lf_hint(name)]

    def _insert_subkey(self, parent: Key, nk: int, name: str) -> None:
        want = _sort_key(name)
        if parent.subkey_count == 0:
            sig = LH_SIGNATURE if self.hive.minor >= 5 else LF_SIGNATURE if self.hive.minor >= 3 else LI_SIGNATURE
            leaf = self._write_leaf(None, sig, self._element(sig, nk, name), 0)
            self._put_u32(parent.offset, NK_OFF_SUBKEY_LIST, leaf)
            return
        root = parent.subkey_list_offset
        is_ri, leaves = self._subkey_leaves(parent)
        if not leaves:
            raise CellError(f"index root {root:#x} has no leaves", offset=_CELL + root, field="Count")
        # the leaf holding the first key above the new name, or the last leaf
        slot = len(leaves) - 1
        for i, leaf in enumerate(leaves[:-1]):
            sig, words = self._leaf_words(leaf)
            if words and self._name_key(words[-_LEAF_STEP[sig]]) > want:
                slot = i
                break
        leaf = leaves[slot]
        sig, words = self._leaf_words(leaf)
        step = _LEAF_STEP[sig]
        lo, hi = 0, len(words) // step
        while lo < hi:  # first element whose name sorts after the new one
            mid = (lo + hi) // 2
            if self._name_key(words[mid * step]) > want:
                hi = mid
            else:
                lo = mid + 1
        words[lo * step:lo * step] = self._element(sig, nk, name)
        count = len(words) // step
        if count <= MAX_LEAF_ELEMENTS:
            new_leaves = [self._write_leaf(leaf, sig, words, lo)]
        else:  # split the leaf in two under an index root
            half = count // 2 * step
            new_leaves = [self._write_leaf(leaf, sig, words[:half], min(lo, count // 2)),
                          self._write_leaf(None, sig, words[half:], 0)]
        if not is_ri and len(new_leaves) == 1:
            self._put_u32(parent.offset, NK_OFF_SUBKEY_LIST, new_leaves[0])
            return
        leaves[slot:slot + 1] = new_leaves
        self._set_leaves(parent, root if is_ri else None, leaves, slot)

    def _set_leaves(self, parent: Key, ri: int | None, leaves: list[int], first: int) -> None:
        if len(leaves) > 0xFFFF:
            raise WriteRefused("too many subkeys for one index root", field="ri", found=len(leaves))
        ri = self._write_list(ri, LIST_HEADER.pack(RI_SIGNATURE, len(leaves)), leaves, 1, first)
        self._put_u32(parent.offset, NK_OFF_SUBKEY_LIST, ri)

    def _remove_subkey(self, parent: Key, nk: int) -> None:
        root = parent.subkey_list_offset
        is_ri, leaves = self._subkey_leaves(parent)
        for slot, leaf in enumerate(leaves):
            sig, words = self._leaf_words(leaf)
            step = _LEAF_STEP[sig]
            offsets = words[::step]
            if nk not in offsets:
                continue
            if offsets.count(nk) > 1:
                raise CellError(f"key node {nk:#x} is listed twice in one subkey list", offset=_CELL + leaf,
                                field="subkey list")
            i = offsets.index(nk)
            del words[i * step:(i + 1) * step]
            if words:
                new_leaf = self._write_leaf(leaf, sig, words, i)
                if is_ri:
                    leaves[slot] = new_leaf
                    self._set_leaves(parent, root, leaves, slot)
                else:
                    self._put_u32(parent.offset, NK_OFF_SUBKEY_LIST, new_leaf)
                return
            self._alloc.free(leaf, "subkey list")
            del leaves[slot]
            if leaves:
                self._set_leaves(parent, root, leaves, slot)
            else:
                if is_ri:
                    self._alloc.free(root, "index root")
                self._put_u32(parent.offset, NK_OFF_SUBKEY_LIST, NO_CELL)
            return
        raise CellError(f"key node {nk:#x} is not in its parent's subkey lists", offset=_CELL + parent.offset,
                        field="subkey list")

    # -- a new hive ------------------------------------------------------------------------------
    @staticmethod
    def new_hive(root_name: str = "ROOT", *, minor: int = 5, file_name: str = "",
                 clock: Callable[[], int] | None = None) -> Hive:
        """An empty, clean, writable hive: a root key with a default security descriptor."""
        return new_hive(root_name, minor=minor, file_name=file_name, clock=clock)


def new_hive(root_name: str = "ROOT", *, minor: int = 5, file_name: str = "",
             clock: Callable[[], int] | None = None) -> Hive:
    """An empty, clean, writable hive (one 4096-byte bin): a root key (KEY_HIVE_ENTRY |
    KEY_NO_DELETE) and one security cell giving SYSTEM and Administrators full control."""
    _check_key_name(root_name)
    if minor not in (3, 4, 5, 6):
        raise WriteRefused("unsupported hive minor version", field="Minor", expected="3 to 6", found=minor)
    now = (clock or _now_filetime)()
    name_raw, compressed = _encode_name(root_name)
    root = HBIN_HEADER.size
    nk_size = align(CELL_HEADER_SIZE + NK_OFF_NAME + len(name_raw))
    sk = root + nk_size
    descriptor = _default_security_descriptor()
    sk_size = align(CELL_HEADER_SIZE + KEY_SECURITY.size + len(descriptor))
    free = sk + sk_size
    if free + 8 > HBIN_ALIGN:
        raise WriteRefused("root key name too long for a new hive", field="name", found=len(root_name))
    flags = KEY_HIVE_ENTRY | KEY_NO_DELETE | (KEY_COMP_NAME if compressed else 0)
    hbin = bytearray(HBIN_ALIGN)
    HBIN_HEADER.pack_into(hbin, 0, HBIN_SIGNATURE, 0, HBIN_ALIGN, bytes(8), now, 0)
    struct.pack_into("<i", hbin, root, -nk_size)
    hbin[root + 4:root + 4 + NK_OFF_NAME + len(name_raw)] = KEY_NODE.pack(
        NK_SIGNATURE, flags, now, 0, NO_CELL, 0, 0, NO_CELL, NO_CELL, 0, NO_CELL, sk, NO_CELL,
        0, 0, 0, 0, 0, len(name_raw), 0) + name_raw
    struct.pack_into("<i", hbin, sk, -sk_size)
    hbin[sk + 4:sk + 4 + KEY_SECURITY.size + len(descriptor)] = KEY_SECURITY.pack(
        SK_SIGNATURE, 0, sk, sk, 1, len(descriptor)) + descriptor
    struct.pack_into("<i", hbin, free, HBIN_ALIGN - free)
    block = new_base_block(root_cell=root, hive_bins_size=HBIN_ALIGN, timestamp=now,
                           file_name=file_name, minor=minor)
    return Hive.open(bytearray(block.to_bytes() + bytes(hbin)), writable=True)

