"""Read a REGF hive: keys, subkeys, values, in memory, bounded everywhere.

Specification: Maxim Suhanov, "Windows registry file format specification" (key node, key value,
subkeys lists, big data). Layouts come from structures.py, bins and cells from cells.py.

    h = Hive.open("SYSTEM")                 # or bytes, or a binary file object
    k = h.key(r"ControlSet001\\Services\\Tcpip")
    k.get("Start")                          # -> 1

Strict mode (the default) raises a HiveError subclass naming the file offset of anything broken.
Tolerant mode (``tolerant=True``) skips the broken item, records a warning in ``hive.warnings``
and goes on. Nothing is cached from the hive's content except the bin map and the base block,
which ``invalidate()`` re-reads after a writer changed the buffer.
"""

from __future__ import annotations

import codecs
import os
import struct
from collections.abc import Iterator
from datetime import datetime

from offline_fix.errors import NotFound, input_file
from offline_fix.hive.baseblock import BASE_BLOCK_SIZE, HBIN_START, BaseBlock, filetime_to_datetime
from offline_fix.hive.cells import MAX_HIVE_BINS_SIZE, BinMap, iter_cells
from offline_fix.hive.errors import BaseBlockError, CellError, HiveBinError, HiveError
from offline_fix.hive.structures import (
    BIG_DATA,
    BIG_DATA_SEGMENT,
    BIG_DATA_THRESHOLD,
    DATA_INLINE,
    DB_SIGNATURE,
    KEY_COMP_NAME,
    KEY_NODE,
    KEY_VALUE,
    LF_SIGNATURE,
    LH_SIGNATURE,
    LI_SIGNATURE,
    LIST_HEADER,
    NK_OFF_NAME,
    NK_OFF_NAME_LENGTH,
    NK_OFF_PARENT,
    NK_OFF_SECURITY,
    NK_OFF_CLASS,
    NK_OFF_CLASS_LENGTH,
    NK_OFF_SUBKEY_COUNT,
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
    VALUE_COMP_NAME,
    VK_OFF_DATA,
    VK_OFF_FLAGS,
    VK_OFF_NAME,
    VK_SIGNATURE,
    type_name,
)

__all__ = ["Hive", "Key", "Value", "KeyNotFound", "fold_name"]

_utf16 = codecs.utf_16_le_decode  # (bytes, errors, final) -> (str, consumed): an odd last byte is left out
_U16 = struct.Struct("<H")
_U32 = struct.Struct("<I")
_I32 = struct.Struct("<i")
# Cell Size, then the fields of CM_KEY_NODE read for every key (x: skipped), as in KEY_NODE:
# Signature, Flags, LastWriteTime, (Spare), Parent, SubKeyCounts[Stable], (Volatile),
# SubKeyLists[Stable], (Volatile), ValueList.Count, ValueList.List, (Security, Class, MaxNameLen,
# MaxClassLen, MaxValueNameLen, MaxValueDataLen, WorkVar), NameLength, (ClassLength).
_NK_CELL = struct.Struct("<i2sHQ4xII4xI4xII28xH2x")
# Cell Size, then CM_KEY_VALUE up to its Flags (Spare skipped), as in KEY_VALUE.
_VK_HEAD = struct.Struct("<i2sHIIIH2x")
assert _NK_CELL.size == 4 + KEY_NODE.size and _VK_HEAD.size == 4 + KEY_VALUE.size
_U64 = struct.Struct("<Q")
_BE32 = struct.Struct(">I")
_LIST_STRUCTS = tuple(struct.Struct(f"<{n}I") for n in range(64))  # small offset lists
_STRING_TYPES = frozenset((REG_SZ, REG_EXPAND_SZ, REG_LINK))
_LIST_STEP = {LI_SIGNATURE: 1, RI_SIGNATURE: 1, LF_SIGNATURE: 2, LH_SIGNATURE: 2}  # u32 words per element
_MAX_TREE_DEPTH = 512  # Windows limits key paths to 512 levels


class KeyNotFound(NotFound):
    """A key path names a key that is not in the hive."""


def fold_name(name: str) -> str:
    """The form Windows compares key and value names in: each character uppercased alone
    (RtlUpcaseUnicodeChar), so that the length never changes (unlike str.upper on "ß")."""
    if name.isascii():
        return name.upper()
    out = []
    for ch in name:
        up = ch.upper()
        out.append(up if len(up) == 1 else ch)
    return "".join(out)


def _named(items, name: str):
    """The first of ``items`` (keys or values) called ``name`` as Windows compares names."""
    want = fold_name(name)
    for item in items:
        if item.name == name or fold_name(item.name) == want:
            return item
    return None


def _split_path(path: str) -> list[str]:
    return [part for part in path.strip("\\").split("\\") if part] if path else []


def _read_file(path: str) -> bytes:
    """The whole file, after its first 4096 bytes were found to be a REGF base block (so that a
    disk image given by mistake is refused before it is read into memory)."""
    with input_file(path, "hive file") as fh:
        head = fh.read(BASE_BLOCK_SIZE)
        BaseBlock.parse(head, what=f"{path}: base block")
        return head + fh.read()


def _read_source(source) -> tuple[bytes | bytearray, str | None]:
    if isinstance(source, (bytes, bytearray)):
        return source, None
    if isinstance(source, memoryview):
        return source.tobytes(), None
    if isinstance(source, (str, os.PathLike)):
        path = os.fspath(source)
        return _read_file(path), path
    read = getattr(source, "read", None)
    if callable(read):
        data = read()
        if not isinstance(data, (bytes, bytearray)):
            raise TypeError("Hive.open: the file object must be opened in binary mode")
        name = getattr(source, "name", None)
        return data, name if isinstance(name, str) else None
    raise TypeError(f"Hive.open: cannot read a hive from {type(source).__name__}")


MAX_WARNINGS = 1000  # tolerant mode keeps this many messages; warning_count counts them all


class Hive:
    """A whole hive held in memory (as hivex does). Use ``Hive.open``.

    Key and Value objects are snapshots made from ``buf``; after a writer changes the bytes,
    make new ones. Assigning ``hive.buf`` re-reads the base block and bins; a writer that
    changes the buffer in place calls ``invalidate()``.
    """

    def __init__(self, buf: bytes | bytearray, *, tolerant: bool = False, path: str | None = None) -> None:
        self.path = path
        self.tolerant = tolerant
        self.warnings: list[str] = []
        self.warning_count = 0
        self.base_block: BaseBlock
        self._bins: BinMap
        self.buf = buf  # reads the base block and bins

    @classmethod
    def open(cls, source, *, tolerant: bool = False, writable: bool = False) -> "Hive":
        """Open a hive from bytes, a bytearray, a path or a binary file object.

        ``writable=True`` keeps a private bytearray copy in ``hive.buf`` for HiveWriter; the
        source is never changed.
        """
        data, path = _read_source(source)
        if writable:
            data = bytearray(data)
        elif isinstance(data, bytearray):
            data = bytes(data)
        return cls(data, tolerant=tolerant, path=path)

    @property
    def buf(self) -> bytes | bytearray:
        """The whole file (a bytearray when writable)."""
        return self._buf

    @buf.setter
    def buf(self, value: bytes | bytearray) -> None:
        self._buf = value
        self.invalidate()

    @property
    def writable(self) -> bool:
        return isinstance(self.buf, bytearray)

    # -- state ---------------------------------------------------------------------------------
    def invalidate(self) -> None:
        """Re-read the base block and the hive bins from ``self.buf`` (after a writer changed it)."""
        buf = self._buf
        if len(buf) < BASE_BLOCK_SIZE:
            raise BaseBlockError("file too short for a registry hive", path=self.path, offset=0,
                                 expected=f">= {BASE_BLOCK_SIZE} bytes", found=len(buf))
        block = BaseBlock.parse(buf[:BASE_BLOCK_SIZE])
        problems = block.problems()
        if problems:
            self._problem(BaseBlockError(f"unusable base block: {'; '.join(problems)}", path=self.path, offset=0))
        bins_size = block.hive_bins_size
        available = (len(buf) - HBIN_START) & ~0xFFF
        if bins_size > available or bins_size > MAX_HIVE_BINS_SIZE or bins_size % 4096:
            self._problem(HiveBinError("hive bins data size does not fit the file (truncated hive?)",
                                       path=self.path, offset=40, field="Length",
                                       expected=f"a multiple of 4096 <= {available}", found=bins_size))
            bins_size = min(bins_size & ~0xFFF, available) or available
        self.base_block = block
        self._bins = BinMap(buf, bins_size, warn=self._warn if self.tolerant else None)
        if not self._bins.bins:
            raise HiveBinError("no valid hive bin", path=self.path, offset=HBIN_START)
        # What Key.values() needs, in one attribute (its per-key setup is on the hot path).
        self._fast = (buf, self._bins.lo, self._bins.hi, bins_size, block.minor <= 3)

    def _warn(self, message: str) -> None:
        self.warning_count += 1
        if len(self.warnings) < MAX_WARNINGS:
            self.warnings.append(message)

    def _problem(self, exc: HiveError) -> None:
        """Raise in strict mode; record a warning in tolerant mode."""
        if not self.tolerant:
            raise exc
        self._warn(str(exc))

    @property
    def dirty(self) -> bool:
        return self.base_block.dirty

    @property
    def minor(self) -> int:
        return self.base_block.minor

    @property
    def bins_size(self) -> int:
        return self._bins.bins_size

    # -- cells ---------------------------------------------------------------------------------
    def cell(self, off: int, what: str) -> tuple[int, int]:
        """(start, end) file offsets of the data of the allocated cell at cell offset ``off``."""
        return self._bins.cell(self.buf, off, what)

    def cell_list(self, off: int, count: int, what: str, *, header: int = 0, step: int = 1) -> tuple[int, ...]:
        """``count`` u32 elements (every ``step``-th word) of the list cell at ``off``, after
        ``header`` bytes; the list must fit its cell."""
        start, end = self._bins.cell(self.buf, off, what)
        need = header + 4 * step * count
        if start + need > end:
            raise CellError(f"{what}: {count} elements do not fit cell {off:#x}", offset=start - 4,
                            field=what, expected=f"<= {(end - start - header) // (4 * step)} elements", found=count)
        words = struct.unpack_from(f"<{count * step}I", self.buf, start + header)
        return words if step == 1 else words[::step]

    def iter_cells(self):
        """(cell offset, size, allocated) for every cell of every bin."""
        return iter_cells(self.buf, self._bins, warn=self._warn if self.tolerant else None)

    def bins(self):
        return list(self._bins.bins)

    # -- keys ----------------------------------------------------------------------------------
    @property
    def root(self) -> "Key":
        return Key(self, self.base_block.root_cell, None)

    def key(self, path: str) -> "Key":
        """The key at ``path`` (backslash-separated, relative to the root, case-insensitive)."""
        key = self.root
        for part in _split_path(path):
            child = key.subkey(part)
            if child is None:
                raise KeyNotFound(f"key not found: {part!r} under {key.path or '(root)'!r}", path=path)
            key = child
        return key

    def find_key(self, path: str) -> "Key | None":
        try:
            return self.key(path)
        except KeyNotFound:
            return None

    def walk(self, path: str = "") -> Iterator["Key"]:
        return self.key(path).walk()


class Key:
    """A key node ("nk" cell). Attributes are read once when the Key is made.

    ``subkey_list_offset``, ``value_list_offset``, ``class_offset`` and ``class_length`` are the
    raw nk fields (cell offsets into the hive bins; the writer rewrites these cells)."""

    __slots__ = ("hive", "offset", "name", "parent", "flags", "timestamp", "parent_offset",
                 "subkey_count", "subkey_list_offset", "value_count", "value_list_offset")

    def __init__(self, hive: Hive, offset: int, parent: "Key | None") -> None:
        buf, lo, hi, bins_size, _small = hive._fast
        # The cell checks of BinMap.cell, inlined; _key_node_error says what is wrong otherwise.
        ok = False
        if offset < bins_size and not offset & 7:
            page = offset >> 12
            bin_end = hi[page]
            if lo[page] <= offset and offset + _NK_CELL.size <= bin_end:
                (size, sig, flags, ts, parent_off, n_sub, sub_list, n_val, val_list,
                 name_len) = _NK_CELL.unpack_from(buf, HBIN_START + offset)
                ok = (sig == NK_SIGNATURE and -size >= _NK_CELL.size + name_len and not size & 7
                      and offset - size <= bin_end)
        if not ok:
            raise _key_node_error(hive, offset)
        name_at = HBIN_START + offset + _NK_CELL.size
        if flags & KEY_COMP_NAME:
            self.name = buf[name_at:name_at + name_len].decode("latin-1")
        else:
            self.name = _utf16(buf[name_at:name_at + name_len], "replace", False)[0]
        self.hive = hive
        self.offset = offset
        self.parent = parent  # the Key this one was reached from (None for the root)
        self.flags = flags
        self.timestamp = ts
        self.parent_offset = parent_off
        self.subkey_count = n_sub
        self.subkey_list_offset = sub_list
        self.value_count = n_val
        self.value_list_offset = val_list

    def _u32(self, field_offset: int) -> int:
        return _U32.unpack_from(self.hive.buf, HBIN_START + self.offset + 4 + field_offset)[0]

    @property
    def security_offset(self) -> int:
        return self._u32(NK_OFF_SECURITY)

    @property
    def class_offset(self) -> int:
        return self._u32(NK_OFF_CLASS)

    @property
    def class_length(self) -> int:
        return _U16.unpack_from(self.hive.buf, HBIN_START + self.offset + 4 + NK_OFF_CLASS_LENGTH)[0]

    def __repr__(self) -> str:
        return f"<Key {self.path or '(root)'!r} at {self.offset:#x}>"

    @property
    def path(self) -> str:
        """Path from the root, without the root's own name ("" for the root)."""
        parts = []
        key = self
        while key.parent is not None:  # a finite chain: each Key is made once from its parent
            parts.append(key.name)
            key = key.parent
        return "\\".join(reversed(parts))

    @property
    def last_written(self) -> datetime | None:
        return filetime_to_datetime(self.timestamp)

    @property
    def class_name(self) -> str | None:
        if self.class_length == 0 or self.class_offset == NO_CELL:
            return None
        start, end = self.hive.cell(self.class_offset, "class name")
        if start + self.class_length > end:
            raise CellError(f"key {self.path!r}: class name runs past its cell", offset=start - 4,
                            field="ClassLength", expected=f"<= {end - start}", found=self.class_length)
        return _utf16(self.hive.buf[start:start + self.class_length], "replace", False)[0]

    # -- subkeys -------------------------------------------------------------------------------
    def _subkey_offsets(self) -> list[int]:
        """Key node offsets of the stable subkeys, in on-disk order, every list checked."""
        if self.subkey_count == 0:
            return []
        hive = self.hive
        root = self.subkey_list_offset
        sig, elements = _index_cell(hive, root, nested=False)
        if sig != RI_SIGNATURE:
            offsets = list(elements)
        else:
            offsets = []
            seen = {root}
            for leaf in elements:
                if leaf in seen:
                    hive._problem(CellError(f"index root {root:#x} lists cell {leaf:#x} twice (a cycle)",
                                            offset=HBIN_START + root, field="ri"))
                    continue
                seen.add(leaf)
                try:
                    offsets.extend(_index_cell(hive, leaf, nested=True)[1])
                except HiveError as exc:
                    hive._problem(exc)
        if len(offsets) != self.subkey_count:
            hive._problem(CellError(f"key {self.path or '(root)'!r}: subkey lists hold {len(offsets)} keys",
                                    offset=HBIN_START + self.offset + 4 + NK_OFF_SUBKEY_COUNT,
                                    field="SubKeyCounts", expected=self.subkey_count, found=len(offsets)))
        return offsets

    def _ancestor_offsets(self) -> set[int]:
        seen = set()
        key: Key | None = self
        while key is not None:  # a finite chain: each Key is made from an existing parent
            seen.add(key.offset)
            key = key.parent
        return seen

    def _children(self, seen: set[int]) -> list["Key"]:
        """The subkeys, checked: an entry naming a key node in ``seen`` (a cycle, or a key met
        before) or a key node whose Parent field names another key (a list shared between two
        keys, say) is an error, or skipped with a warning in tolerant mode."""
        hive = self.hive
        try:
            offsets = self._subkey_offsets()
        except HiveError as exc:
            hive._problem(exc)
            return []
        children = []
        for off in offsets:
            if off in seen:
                hive._problem(CellError(f"key {self.path or '(root)'!r}: subkey list reaches key node "
                                        f"{off:#x} a second time (a cycle or a repeated entry)",
                                        offset=HBIN_START + off, field="subkey list"))
                continue
            try:
                child = Key(hive, off, self)
            except HiveError as exc:
                hive._problem(exc)
                continue
            if child.parent_offset != self.offset:
                hive._problem(CellError(f"key {self.path or '(root)'!r} lists key node {off:#x} "
                                        f"({child.name!r}) whose parent is another key",
                                        offset=HBIN_START + off + 4 + NK_OFF_PARENT, field="Parent",
                                        expected=self.offset, found=child.parent_offset))
                continue
            children.append(child)
        return children

    def subkeys(self) -> Iterator["Key"]:
        """The stable subkeys in on-disk list order (see _children for what is checked)."""
        if not self.subkey_count:
            return iter(())
        ancestors = self._ancestor_offsets()
        if len(ancestors) > _MAX_TREE_DEPTH:
            self.hive._problem(CellError(f"key {self.path!r} is nested deeper than {_MAX_TREE_DEPTH} levels",
                                         offset=HBIN_START + self.offset))
            return iter(())
        return iter(self._children(ancestors))

    def subkey(self, name: str) -> "Key | None":
        """The subkey called ``name`` (compared as Windows does, case-insensitively), or None."""
        return _named(self.subkeys(), name)

    def walk(self) -> Iterator["Key"]:
        """This key and every key below it, depth first, each list in on-disk order; each key
        node is visited once (see _children for what is checked)."""
        visited = {self.offset}
        stack = [self]
        while stack:  # every key node is pushed at most once (visited), so this ends
            key = stack.pop()
            yield key
            if key.subkey_count:
                children = key._children(visited)
                visited.update([child.offset for child in children])
                children.reverse()
                stack.extend(children)

    # -- values --------------------------------------------------------------------------------
    def values(self) -> Iterator["Value"]:
        """The values in on-disk list order; a damaged one is an error, or skipped with a
        warning in tolerant mode."""
        if not self.value_count:
            return iter(())
        hive = self.hive
        buf, lo, hi, bins_size, small_only = hive._fast
        # The value list cell, checked as cell_list does (inlined for speed; cell_list for errors).
        off = self.value_list_offset
        count = self.value_count
        offsets = None
        if off < bins_size and not off & 7:
            page = off >> 12
            if lo[page] <= off:
                size = -_I32.unpack_from(buf, HBIN_START + off)[0]
                if size >= 4 + 4 * count and not size & 7 and off + size <= hi[page]:
                    offsets = (_LIST_STRUCTS[count] if count < 64 else struct.Struct(f"<{count}I")).unpack_from(
                        buf, HBIN_START + off + 4)
        if offsets is None:
            try:
                offsets = hive.cell_list(off, count, "value list")
            except HiveError as exc:
                hive._problem(exc)
                return iter(())
        unpack_vk = _VK_HEAD.unpack_from
        unpack_i32 = _I32.unpack_from
        unpack_u32 = _U32.unpack_from
        new = object.__new__
        values = []
        append = values.append
        for off in offsets:
            # Value.__init__'s checks, inlined for speed; anything unusual (big data, or any
            # defect) goes to Value.__init__, the reference, which raises the precise error.
            if off < bins_size and not off & 7:
                page = off >> 12
                bin_end = hi[page]
                if lo[page] <= off and off + 24 <= bin_end:
                    size, sig, name_len, dlen, data_off, typ, flags = unpack_vk(buf, HBIN_START + off)
                    if sig == b"vk" and -size >= 24 + name_len and not size & 7 and off - size <= bin_end:
                        at = HBIN_START + off + 4
                        where = 0
                        if dlen & DATA_INLINE:
                            dlen &= ~DATA_INLINE
                            if dlen <= 4:
                                where = at + VK_OFF_DATA
                        elif dlen == 0:
                            where = at + VK_OFF_DATA
                        elif (small_only or dlen <= BIG_DATA_THRESHOLD) and data_off < bins_size and not data_off & 7:
                            dpage = data_off >> 12
                            if lo[dpage] <= data_off:
                                dsize = -unpack_i32(buf, HBIN_START + data_off)[0]
                                if dsize >= dlen + 4 and not dsize & 7 and data_off + dsize <= hi[dpage]:
                                    where = HBIN_START + data_off + 4
                        if where:
                            value = new(Value)
                            value.hive = hive
                            value.offset = off
                            if flags & VALUE_COMP_NAME:
                                value.name = buf[at + 20:at + 20 + name_len].decode("latin-1")
                            else:
                                value.name = _utf16(buf[at + 20:at + 20 + name_len], "replace", False)[0]
                            value.type = typ
                            value.size = dlen
                            value._where = where
                            # decode_data, inlined for the two commonest types
                            if typ == REG_DWORD and dlen == 4:
                                value.data = unpack_u32(buf, where)[0]
                            elif typ == REG_SZ or typ == REG_EXPAND_SZ:
                                text = _utf16(buf[where:where + dlen], "replace", False)[0]
                                nul = text.find("\x00")
                                value.data = text if nul < 0 else text[:nul]
                            else:
                                raw = buf[where:where + dlen]
                                value.data = decode_data(typ, raw if type(raw) is bytes else bytes(raw))
                            append(value)
                            continue
            try:
                append(Value(hive, off))
            except HiveError as exc:
                hive._problem(exc)
        return iter(values)

    def value(self, name: str) -> "Value | None":
        """The value called ``name`` ("" is the default value), case-insensitively, or None."""
        return _named(self.values(), name)

    def get(self, name: str, default=None):
        value = self.value(name)
        return default if value is None else value.data


class Value:
    """A key value ("vk" cell). Its data cells are located and checked, and ``data`` decoded,
    when the Value is made; ``raw`` is sliced from the buffer on each access. Like Keys, Values
    are snapshots: after a write, read them again."""

    # _where: file offset of the data (int), or ((file offset, length), ...) for big data.
    # data: decoded when the Value is made (Values, like Keys, are snapshots of the buffer).
    __slots__ = ("hive", "offset", "name", "type", "size", "_where", "data")

    def __init__(self, hive: Hive, offset: int) -> None:
        """The reference parser of a key value; Key.values() inlines its common path."""
        buf = hive.buf
        start, end = hive.cell(offset, "key value")
        if end - start < KEY_VALUE.size:
            raise CellError(f"key value cell {offset:#x} too small", offset=start - 4, field="vk",
                            expected=KEY_VALUE.size, found=end - start)
        sig, name_len, dlen, data_off, typ, flags, _spare = KEY_VALUE.unpack_from(buf, start)
        if sig != VK_SIGNATURE:
            raise CellError(f"cell {offset:#x} is not a key value", offset=start, field="Signature",
                            expected=VK_SIGNATURE, found=bytes(sig))
        name_at = start + VK_OFF_NAME
        if name_at + name_len > end:
            raise CellError(f"key value {offset:#x}: name runs past its cell", offset=start + 2,
                            field="NameLength", expected=f"<= {end - name_at}", found=name_len)
        if flags & VALUE_COMP_NAME:
            name = buf[name_at:name_at + name_len].decode("latin-1")
        else:
            name = _utf16(buf[name_at:name_at + name_len], "replace", False)[0]
        if dlen & DATA_INLINE:
            dlen &= ~DATA_INLINE
            if dlen > 4:
                raise CellError(f"value {name!r}: inline data longer than 4 bytes", offset=start + 4,
                                field="DataLength", expected="<= 4", found=dlen)
            where = start + VK_OFF_DATA
        elif dlen == 0:
            where = start + VK_OFF_DATA
        elif dlen > BIG_DATA_THRESHOLD and hive.base_block.minor > 3:
            where = _big_data_segments(hive, data_off, dlen, name)
        else:
            dstart, dend = hive.cell(data_off, "value data")
            if dstart + dlen > dend:
                raise CellError(f"value {name!r}: data longer than its cell", offset=start + 4,
                                field="DataLength", expected=f"<= {dend - dstart}", found=dlen)
            where = dstart
        self.hive = hive
        self.offset = offset
        self.name = name
        self.type = typ
        self.size = dlen
        self._where = where
        self.data = decode_data(typ, self.raw)

    def __repr__(self) -> str:
        return f"<Value {self.name!r} {self.type_name} at {self.offset:#x}>"

    @property
    def type_name(self) -> str:
        return type_name(self.type)

    @property
    def flags(self) -> int:
        return _U16.unpack_from(self.hive.buf, HBIN_START + self.offset + 4 + VK_OFF_FLAGS)[0]

    @property
    def raw(self) -> bytes:
        """The stored data, exactly ``size`` bytes."""
        buf = self.hive.buf
        at = self._where
        if type(at) is int:
            data = buf[at:at + self.size]
        else:
            data = b"".join([buf[a:a + n] for a, n in at])
        return data if type(data) is bytes else bytes(data)



def decode_data(typ: int, raw: bytes):
    """Decoded value data: str for REG_SZ/EXPAND_SZ/LINK (up to the first NUL), list[str] for
    REG_MULTI_SZ, int for REG_DWORD/DWORD_BIG_ENDIAN/QWORD of the right size, else ``raw``."""
    if typ in _STRING_TYPES:
        text = _utf16(raw, "replace", False)[0]
        nul = text.find("\x00")
        return text if nul < 0 else text[:nul]
    if typ == REG_DWORD:
        if len(raw) == 4:
            return _U32.unpack(raw)[0]
    elif typ == REG_MULTI_SZ:
        return decode_multi_sz(raw)
    elif typ == REG_QWORD:
        if len(raw) == 8:
            return _U64.unpack(raw)[0]
    elif typ == REG_DWORD_BIG_ENDIAN:
        if len(raw) == 4:
            return _BE32.unpack(raw)[0]
    return raw


def _key_node_error(hive: Hive, offset: int) -> CellError:
    """What is wrong with the key node at ``offset`` (Key.__init__ found something)."""
    start, end = hive.cell(offset, "key node")  # raises for a bad cell
    if end - start < KEY_NODE.size:
        return CellError(f"key node cell {offset:#x} too small", offset=start - 4, field="nk",
                         expected=KEY_NODE.size, found=end - start)
    sig = bytes(hive.buf[start:start + 2])
    if sig != NK_SIGNATURE:
        return CellError(f"cell {offset:#x} is not a key node", offset=start, field="Signature",
                         expected=NK_SIGNATURE, found=sig)
    (name_len,) = _U16.unpack_from(hive.buf, start + NK_OFF_NAME_LENGTH)
    return CellError(f"key node {offset:#x}: name runs past its cell", offset=start + NK_OFF_NAME_LENGTH,
                     field="NameLength", expected=f"<= {end - start - NK_OFF_NAME}", found=name_len)


def _index_cell(hive: Hive, off: int, *, nested: bool) -> tuple[bytes, tuple[int, ...]]:
    """(signature, element offsets) of a subkey list: li/lf/lh (key nodes) or ri (leaves; not
    inside another ri). The cell is checked once; its elements must fit it."""
    buf = hive.buf
    start, end = hive.cell(off, "subkey list")
    sig, count = LIST_HEADER.unpack_from(buf, start)
    step = _LIST_STEP.get(sig)
    if step is None or (nested and sig == RI_SIGNATURE):
        expected = "li, lf or lh" if nested else "li, lf, lh or ri"
        raise CellError(f"cell {off:#x} is not a subkey list", offset=start, field="Signature",
                        expected=expected, found=bytes(sig))
    room = (end - start - LIST_HEADER.size) // (4 * step)
    if count > room:
        raise CellError(f"subkey list {off:#x}: {count} elements do not fit its cell", offset=start + 2,
                        field="Count", expected=f"<= {room}", found=count)
    words = struct.unpack_from(f"<{count * step}I", buf, start + LIST_HEADER.size)
    return sig, words if step == 1 else words[::2]


def decode_multi_sz(raw: bytes) -> list[str]:
    """REG_MULTI_SZ: the strings between NULs, the terminating NULs dropped. An empty string
    inside the list is kept, so that nothing stored is hidden."""
    text = _utf16(raw, "replace", False)[0].rstrip("\x00")
    return text.split("\x00") if text else []


def _big_data_segments(hive: Hive, off: int, size: int, name: str) -> tuple[tuple[int, int], ...]:
    """(file offset, length) of each segment of a big data record, checked."""
    buf = hive.buf
    start, end = hive.cell(off, "big data")
    if end - start < BIG_DATA.size:
        raise CellError(f"value {name!r}: big data cell too small", offset=start - 4, field="db",
                        expected=BIG_DATA.size, found=end - start)
    sig, count, list_off = BIG_DATA.unpack_from(buf, start)
    if sig != DB_SIGNATURE:
        raise CellError(f"value {name!r}: data over {BIG_DATA_THRESHOLD} bytes is not a big data record",
                        offset=start, field="Signature", expected=DB_SIGNATURE, found=bytes(sig))
    needed = -(-size // BIG_DATA_SEGMENT)
    if count < needed:
        raise CellError(f"value {name!r}: big data has too few segments", offset=start + 2, field="Count",
                        expected=f">= {needed}", found=count)
    segments = []
    left = size
    for seg in hive.cell_list(list_off, count, "big data segment list")[:needed]:
        sstart, send = hive.cell(seg, "big data segment")
        take = min(left, BIG_DATA_SEGMENT)
        if sstart + take > send:
            raise CellError(f"value {name!r}: big data segment shorter than its share", offset=sstart - 4,
                            field="segment", expected=take, found=send - sstart)
        segments.append((sstart, take))
        left -= take
    return tuple(segments)
