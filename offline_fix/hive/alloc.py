"""Writing cells of an in-memory hive: tracked writes, free space, new hive bins.

Specification: Maxim Suhanov, "Windows registry file format specification", sections "Hive bin"
and "Cell": a cell's Size is negative when allocated and positive when free, includes its own 4
bytes and is a multiple of 8; a cell never crosses its hive bin; a hive bin is a multiple of 4096
bytes. Nothing here knows what a cell holds (writer.py does).

Two pieces:
- ``TrackedBuffer``: every write to the hive bytes goes through it, so that a commit can report
  the exact byte ranges that changed (file offset, old bytes, new bytes) and whether the file
  grows. ``Commit.apply`` and ``Commit.undo`` replay or revert them on a copy of the file.
- ``CellAllocator``: allocates cells best fit from the free cells (splitting the rest off as a
  free cell), frees cells (coalescing with free neighbours in the same bin) and appends hive bins
  when nothing fits. Cell offsets are relative to the hive bins data, as in the format.
"""

from __future__ import annotations

import bisect
import struct
from collections.abc import Callable
from dataclasses import dataclass

from offline_fix.errors import VerificationFailed
from offline_fix.hive.baseblock import HBIN_START
from offline_fix.hive.cells import MAX_HIVE_BINS_SIZE
from offline_fix.hive.errors import CellError
from offline_fix.hive.structures import CELL_ALIGN, CELL_HEADER_SIZE, HBIN_ALIGN, HBIN_HEADER, HBIN_SIGNATURE

_I32 = struct.Struct("<i")
# Byte runs closer than this are reported as one range (the bytes between are unchanged).
_COALESCE_GAP = 16
_DIFF_BLOCK = 64


@dataclass(frozen=True)
class ByteRange:
    """One changed run of the file: ``new`` replaces ``old`` at file ``offset``.

    ``old`` is what the file held there before, cut at the old end of the file (so it is shorter
    than ``new``, or empty, where the file grows)."""

    offset: int
    old: bytes
    new: bytes

    @property
    def end(self) -> int:
        return self.offset + len(self.new)

    def to_dict(self) -> dict:
        return {"offset": self.offset, "length": len(self.new), "old": self.old.hex(), "new": self.new.hex()}


@dataclass(frozen=True)
class Commit:
    """What one commit changed: sorted, non-overlapping ranges and the file sizes around them."""

    ranges: tuple[ByteRange, ...]
    old_size: int
    new_size: int

    @property
    def grows(self) -> bool:
        return self.new_size > self.old_size

    @property
    def changed_bytes(self) -> int:
        return sum(len(r.new) for r in self.ranges)

    def apply(self, original: bytes) -> bytes:
        """The new file from the original one: grow it (zeros), then write each range.
        Raises VerificationFailed when ``original`` is not the file this commit was made from."""
        self._check(original, self.old_size, "old")
        data = bytearray(original)
        data.extend(bytes(self.new_size - len(data)))
        for r in self.ranges:
            data[r.offset:r.end] = r.new
        return bytes(data)

    def undo(self, changed: bytes) -> bytes:
        """The original file from the new one: write back each range's old bytes, then cut the
        file to its old size. Raises VerificationFailed when ``changed`` is not the new file."""
        self._check(changed, self.new_size, "new")
        data = bytearray(changed)
        for r in self.ranges:
            data[r.offset:r.offset + len(r.old)] = r.old
        del data[self.old_size:]
        return bytes(data)

    def _check(self, data: bytes, size: int, side: str) -> None:
        if len(data) != size:
            raise VerificationFailed(f"file is not the {side} state of this commit", field="size",
                                     expected=size, found=len(data))
        for r in self.ranges:
            want = r.old if side == "old" else r.new
            if data[r.offset:r.offset + len(want)] != want:
                raise VerificationFailed(f"file is not the {side} state of this commit", offset=r.offset,
                                         field="bytes", expected=want[:16].hex(),
                                         found=bytes(data[r.offset:r.offset + min(len(want), 16)]).hex())

    def to_dict(self) -> dict:
        return {"old_size": self.old_size, "new_size": self.new_size, "grows": self.grows,
                "changed_bytes": self.changed_bytes, "ranges": [r.to_dict() for r in self.ranges]}


def _merge(intervals: list[tuple[int, int]], gap: int) -> list[tuple[int, int]]:
    merged: list[tuple[int, int]] = []
    for start, end in sorted(intervals):
        if merged and start <= merged[-1][1] + gap:
            if end > merged[-1][1]:
                merged[-1] = (merged[-1][0], end)
        else:
            merged.append((start, end))
    return merged


def _differing_runs(old: bytes, new: bytes, base: int) -> list[tuple[int, int]]:
    """File intervals where ``old`` and ``new`` (same length, starting at ``base``) differ."""
    runs = []
    for at in range(0, len(new), _DIFF_BLOCK):
        a, b = old[at:at + _DIFF_BLOCK], new[at:at + _DIFF_BLOCK]
        if a == b:
            continue
        first = next(i for i in range(len(b)) if a[i] != b[i])
        last = next(i for i in range(len(b) - 1, -1, -1) if a[i] != b[i])
        runs.append((base + at + first, base + at + last + 1))
    return runs


class TrackedBuffer:
    """The bytes of a hive file (a bytearray, changed in place) with every write remembered.

    Each write keeps the bytes it replaced, so that a failed operation can be rolled back to a
    ``mark`` exactly, and ``take`` reports what changed since the last commit."""

    def __init__(self, buf: bytearray) -> None:
        if not isinstance(buf, bytearray):
            raise TypeError("a writable hive buffer is a bytearray")
        self.buf = buf
        self._snapshot = bytes(buf)
        self._undo: list[tuple[int, bytes]] = []  # (file offset, bytes replaced), in write order

    @property
    def size(self) -> int:
        return len(self.buf)

    def write(self, offset: int, data: bytes) -> None:
        """Write ``data`` at FILE ``offset``, inside the buffer (grow it first with ``grow``)."""
        end = offset + len(data)
        if offset < 0 or end > len(self.buf):
            raise CellError("write outside the hive file", offset=offset, field="write",
                            expected=f"<= {len(self.buf)}", found=end)
        if data:
            self._undo.append((offset, bytes(self.buf[offset:end])))
            self.buf[offset:end] = data

    def grow(self, size: int) -> None:
        """Make the file at least ``size`` bytes long (new bytes are zero)."""
        if size > len(self.buf):
            self.buf.extend(bytes(size - len(self.buf)))

    @property
    def pending(self) -> bool:
        return bool(self._undo) or len(self.buf) != len(self._snapshot)

    def mark(self) -> tuple[int, int]:
        return len(self._undo), len(self.buf)

    def rollback(self, mark: tuple[int, int] = (0, -1)) -> None:
        """Undo every write made since ``mark`` (default: since the last ``take``)."""
        count, size = mark
        while len(self._undo) > count:
            offset, old = self._undo.pop()
            self.buf[offset:offset + len(old)] = old
        del self.buf[size if size >= 0 else len(self._snapshot):]

    def take(self) -> Commit:
        """The changes since the last ``take`` (or since creation); starts a new batch."""
        old = self._snapshot
        new = self.buf
        runs: list[tuple[int, int]] = []
        for start, end in _merge([(o, o + len(b)) for o, b in self._undo], 0):
            old_part = old[start:end].ljust(end - start, b"\x00")
            runs.extend(_differing_runs(old_part, bytes(new[start:end]), start))
        ranges = tuple(
            ByteRange(start, old[start:min(end, len(old))], bytes(new[start:end]))
            for start, end in _merge(runs, _COALESCE_GAP)
        )
        commit = Commit(ranges=ranges, old_size=len(old), new_size=len(new))
        self._snapshot = bytes(new)
        self._undo = []
        return commit


def align(n: int, to: int = CELL_ALIGN) -> int:
    return (n + to - 1) // to * to


class CellAllocator:
    """Free space of the hive bins data: best-fit allocation, coalescing free, new bins.

    ``hive`` is the reader's Hive over the same buffer: it checks every cell (``hive.cell``) and
    lists bins and cells. The free cells are indexed on first use (one walk over every cell).
    Appending a bin calls ``on_grow(new hive bins size)``, which must make the hive see it.
    """

    def __init__(self, tb: TrackedBuffer, hive, *, on_grow: Callable[[int], None],
                 max_bins_size: int = MAX_HIVE_BINS_SIZE) -> None:
        self.tb = tb
        self.hive = hive
        self.on_grow = on_grow
        self.max_bins_size = max_bins_size
        self.bins_size = hive.bins_size
        self._bin_starts = [off for off, _size in hive.bins()]
        self._bin_ends = [off + size for off, size in hive.bins()]
        self._indexed = False
        self._free_at: dict[int, int] = {}  # offset -> size
        self._free_end: dict[int, int] = {}  # end offset -> offset
        self._by_size: dict[int, set[int]] = {}
        self._sizes: list[int] = []  # sorted distinct sizes of free cells

    # -- index of free cells ---------------------------------------------------------------------
    def _index(self) -> None:
        if self._indexed:
            return
        for off, size, allocated in self.hive.iter_cells():
            if not allocated:
                self._add_free(off, size)
        self._indexed = True

    def _add_free(self, off: int, size: int) -> None:
        self._free_at[off] = size
        self._free_end[off + size] = off
        group = self._by_size.get(size)
        if group is None:
            self._by_size[size] = {off}
            bisect.insort(self._sizes, size)
        else:
            group.add(off)

    def _drop_free(self, off: int) -> int:
        size = self._free_at.pop(off)
        del self._free_end[off + size]
        group = self._by_size[size]
        group.discard(off)
        if not group:
            del self._by_size[size]
            del self._sizes[bisect.bisect_left(self._sizes, size)]
        return size

    def free_cells(self) -> dict[int, int]:
        """{offset: size} of every free cell (for tests and statistics)."""
        self._index()
        return dict(self._free_at)

    def _bin_of(self, off: int) -> tuple[int, int]:
        i = bisect.bisect_right(self._bin_starts, off) - 1
        if i < 0 or off >= self._bin_ends[i]:
            raise CellError(f"cell {off:#x} is not inside a hive bin", offset=HBIN_START + off, field="cell")
        return self._bin_starts[i], self._bin_ends[i]

    # -- cells -----------------------------------------------------------------------------------
    def _set_size(self, off: int, size: int) -> None:
        self.tb.write(HBIN_START + off, _I32.pack(size))

    def capacity(self, off: int, what: str = "cell") -> int:
        """Bytes of data the allocated cell at ``off`` can hold (the cell checked by the reader)."""
        start, end = self.hive.cell(off, what)
        return end - start

    def allocate(self, data_len: int) -> int:
        """An allocated cell holding at least ``data_len`` bytes (its content is not cleared)."""
        need = max(align(data_len + CELL_HEADER_SIZE), CELL_ALIGN)
        self._index()
        i = bisect.bisect_left(self._sizes, need)
        if i == len(self._sizes):
            off = self._append_bin(need)
        else:
            off = min(self._by_size[self._sizes[i]])
        size = self._drop_free(off)
        if size - need >= CELL_ALIGN:
            self._set_size(off + need, size - need)
            self._add_free(off + need, size - need)
            size = need
        self._set_size(off, -size)
        return off

    def free(self, off: int, what: str = "cell") -> None:
        """Mark the allocated cell at ``off`` free and merge it with free neighbours in its bin."""
        size = self.capacity(off, what) + CELL_HEADER_SIZE
        self._index()
        bin_start, bin_end = self._bin_of(off)
        nxt = off + size
        if nxt < bin_end and nxt in self._free_at:
            size += self._drop_free(nxt)
        prev = self._free_end.get(off)
        if prev is not None and prev >= bin_start:
            size += self._drop_free(prev)
            off = prev
        self._set_size(off, size)
        self._add_free(off, size)

    # -- rollback --------------------------------------------------------------------------------
    def mark(self) -> tuple[int, int]:
        return len(self._bin_starts), self.bins_size

    def rollback(self, mark: tuple[int, int]) -> None:
        """Forget the bins appended since ``mark`` (after TrackedBuffer.rollback put their bytes
        back) and re-index the free cells on next use."""
        count, self.bins_size = mark
        del self._bin_starts[count:]
        del self._bin_ends[count:]
        self._indexed = False
        self._free_at.clear()
        self._free_end.clear()
        self._by_size.clear()
        self._sizes.clear()

    # -- hive bins -------------------------------------------------------------------------------
    def _append_bin(self, need: int) -> int:
        """Append a hive bin with one free cell of at least ``need`` bytes; return that cell."""
        off = self.bins_size
        size = align(need + HBIN_HEADER.size, HBIN_ALIGN)
        if off + size > self.max_bins_size:
            raise CellError("the hive would outgrow its largest size", field="hive bins data size",
                            expected=f"<= {self.max_bins_size}", found=off + size)
        self.tb.grow(HBIN_START + off + size)
        self.tb.write(HBIN_START + off, HBIN_HEADER.pack(HBIN_SIGNATURE, off, size, bytes(8), 0, 0))
        self.tb.write(HBIN_START + off + HBIN_HEADER.size, bytes(size - HBIN_HEADER.size))
        cell = off + HBIN_HEADER.size
        self._set_size(cell, size - HBIN_HEADER.size)
        self._bin_starts.append(off)
        self._bin_ends.append(off + size)
        self.bins_size = off + size
        self.on_grow(self.bins_size)
        self._add_free(cell, size - HBIN_HEADER.size)
        return cell
