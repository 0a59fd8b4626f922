"""Hive bins and cells: where a cell may be, and how big it may be.

Specification: Maxim Suhanov, "Windows registry file format specification", sections "Hive bin"
and "Cell". Layouts are in structures.py; this module only checks and locates.

Every cell offset here is relative to the start of the hive bins data (file offset 4096), as in
the format. Errors carry the FILE offset of what was wrong, so that a hex dump finds it.
"""

from __future__ import annotations

import struct
from collections.abc import Callable

from offline_fix.hive.baseblock import HBIN_START
from offline_fix.hive.errors import CellError, HiveBinError
from offline_fix.hive.structures import CELL_ALIGN, CELL_HEADER_SIZE, HBIN_ALIGN, HBIN_HEADER, HBIN_SIGNATURE

_I32 = struct.Struct("<i")
_PAGE_SHIFT = 12  # hive bins are aligned to 4096 bytes
assert 1 << _PAGE_SHIFT == HBIN_ALIGN

# The largest hive bins data Windows maps is 2 GiB; anything bigger is a corrupt header.
MAX_HIVE_BINS_SIZE = 0x80000000
_NOWHERE = 1 << 62  # lo[] of a page outside any valid bin: above every offset
_HBIN_HEAD = struct.Struct("<4sII")  # Signature, FileOffset, Size: the start of HBIN_HEADER


class BinMap:
    """The hive bins of a buffer, checked once, then used to bound every cell.

    For the 4096-byte page ``page`` of the hive bins data, ``lo[page]`` is the first offset a
    cell may start at (its bin's start plus the bin header) and ``hi[page]`` the end of its bin
    (offsets relative to the hive bins data); where no valid bin is, ``lo`` is above every offset
    and ``hi`` is 0. A cell starts at or after ``lo`` and ends at or before ``hi`` of its page.
    Hot paths in reader.py test these two lists inline and call ``cell`` only for the error.
    """

    __slots__ = ("bins_size", "lo", "hi", "bins")

    def __init__(self, buf, bins_size: int, *, warn: Callable[[str], None] | None = None) -> None:
        """Walk the bins of ``buf`` (the whole file) covering ``bins_size`` bytes of hive bins data.

        Strict (``warn`` is None): any bad bin raises HiveBinError. Tolerant: a bad bin is
        reported through ``warn`` and the walk resynchronises at the next page holding "hbin".
        """
        pages = bins_size >> _PAGE_SHIFT
        self.bins_size = bins_size
        self.lo = lo = [_NOWHERE] * pages
        self.hi = hi = [0] * pages
        self.bins: list[tuple[int, int]] = []  # (offset, size) of each valid bin
        bins = self.bins
        limit = min(bins_size, len(buf) - HBIN_START)
        off = 0
        while off < bins_size:  # every iteration advances off by at least one page
            if off + HBIN_HEADER.size <= limit:
                signature, file_offset, size = _HBIN_HEAD.unpack_from(buf, HBIN_START + off)
                if (signature == HBIN_SIGNATURE and file_offset == off and size >= HBIN_ALIGN
                        and not size % HBIN_ALIGN and off + size <= limit):
                    page = off >> _PAGE_SHIFT
                    if size == HBIN_ALIGN:
                        lo[page] = off + HBIN_HEADER.size
                        hi[page] = off + size
                    else:
                        last = (off + size) >> _PAGE_SHIFT
                        lo[page:last] = [off + HBIN_HEADER.size] * (last - page)
                        hi[page:last] = [off + size] * (last - page)
                    bins.append((off, size))
                    off += size
                    continue
            problem = self._bin_problem(buf, off, bins_size)
            if warn is None:
                raise problem
            warn(str(problem))
            off += HBIN_ALIGN
            while off < bins_size and buf[HBIN_START + off:HBIN_START + off + 4] != HBIN_SIGNATURE:
                off += HBIN_ALIGN

    @staticmethod
    def _bin_problem(buf, off: int, bins_size: int) -> HiveBinError:
        at = HBIN_START + off
        if at + HBIN_HEADER.size > len(buf):
            return HiveBinError("hive bin header truncated", offset=at, field="hbin",
                                expected=HBIN_HEADER.size, found=max(len(buf) - at, 0))
        signature, file_offset, size, _reserved, _ts, _spare = HBIN_HEADER.unpack_from(buf, at)
        if signature != HBIN_SIGNATURE:
            return HiveBinError("bad hive bin signature", offset=at, field="Signature",
                                expected=HBIN_SIGNATURE, found=bytes(signature))
        if file_offset != off:
            return HiveBinError("hive bin offset does not match its position", offset=at + 4,
                                field="FileOffset", expected=off, found=file_offset)
        if size < HBIN_ALIGN or size % HBIN_ALIGN or off + size > bins_size:
            return HiveBinError("bad hive bin size", offset=at + 8, field="Size",
                                expected=f"a multiple of 4096 within {bins_size - off}", found=size)
        if at + size > len(buf):
            return HiveBinError("hive bin truncated", offset=at, field="Size",
                                expected=size, found=len(buf) - at)
        return HiveBinError("bad hive bin", offset=at, field="hbin")  # not reached: the fast path took it

    def cell(self, buf, off: int, what: str) -> tuple[int, int]:
        """(start, end) FILE offsets of the data of the allocated cell at ``off``.

        Checks: aligned, inside a valid bin and after its header, allocated (negative size),
        size aligned to 8 and the whole cell inside its bin.
        """
        if off & 7 or off >= self.bins_size:
            raise CellError(f"{what}: cell offset {off:#x} out of range or misaligned",
                            offset=HBIN_START + off if off < self.bins_size else None, field=what,
                            expected=f"a multiple of 8 below {self.bins_size:#x}", found=off)
        page = off >> _PAGE_SHIFT
        bin_end = self.hi[page]
        if off < self.lo[page]:
            raise CellError(f"{what}: cell {off:#x} is not inside a valid hive bin",
                            offset=HBIN_START + off, field=what)
        at = HBIN_START + off
        size = -_I32.unpack_from(buf, at)[0]
        if size <= 0:
            raise CellError(f"{what}: cell {off:#x} is free or empty", offset=at, field="Size",
                            expected="a negative (allocated) size", found=-size)
        if size < CELL_ALIGN or size & (CELL_ALIGN - 1) or off + size > bin_end:
            raise CellError(f"{what}: cell {off:#x} has a bad size", offset=at, field="Size",
                            expected=f"a multiple of 8 within {bin_end - off}", found=size)
        return at + CELL_HEADER_SIZE, at + size


def iter_cells(buf, binmap: BinMap, *, warn: Callable[[str], None] | None = None):
    """Yield (cell offset, size, allocated) for every cell of every valid bin.

    A cell with a bad size ends the walk of its bin (strict: CellError; tolerant: a warning).
    """
    for bin_offset, bin_size in binmap.bins:
        off = bin_offset + HBIN_HEADER.size
        end = bin_offset + bin_size
        while off < end:  # every iteration advances off by a positive multiple of 8
            raw = _I32.unpack_from(buf, HBIN_START + off)[0]
            size = -raw if raw < 0 else raw
            if size < CELL_ALIGN or size & (CELL_ALIGN - 1) or off + size > end:
                problem = CellError(f"cell {off:#x} has a bad size", offset=HBIN_START + off,
                                    field="Size", expected=f"a multiple of 8 within {end - off}", found=raw)
                if warn is None:
                    raise problem
                warn(str(problem))
                break
            yield off, size, raw < 0
            off += size
