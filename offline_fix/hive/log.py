"""Transaction-log replay: turn a dirty hive and its .LOG/.LOG1/.LOG2 files into a clean hive.

Specification: Maxim Suhanov, "Windows registry file format specification",
https://github.com/msuhanov/regf/blob/master/Windows%20registry%20file%20format%20specification.md
sections "Format of transaction log files", "Dirty state of a hive" and "Multiple transaction log
files". Works on bytes only: nothing is read from or written to a disk here except by find_logs(),
which only lists file names.

What ``recover()`` does, rule by rule (spec note numbers in brackets):

* A hive is dirty when its base block has a wrong checksum or unequal sequence numbers. A clean
  hive is returned unchanged with no entry applied, whatever its logs hold ("Dirty state").
* The primary's base block is used when its checksum is right and its fields are sane; otherwise
  it is taken from a log whose base block is valid (checksum right, both sequence numbers equal),
  with File type set back to 0 [old 4, new 6]. Among new-format logs the one with the lowest
  sequence number (the oldest state) is chosen; the run of entries must then continue from it.
* New format (File type 6): every 512-byte aligned "HvLE" entry of every log is found; an entry
  counts only when its Hash-2 (header), its layout (size, page references inside the entry and
  inside its hive bins size, a hive bins size that is a non-zero multiple of 4096) and, before it
  is applied, its Hash-1 (pages) are right [8]. The run starts at the entry whose sequence number
  equals the primary's secondary sequence number (older entries are skipped [5]) and goes on
  while each entry is followed by the next number [7], through LOG1, LOG2 and LOG in whatever
  order continues the run (either log may hold the earlier entries). The hive grows to each
  entry's hive bins size [9]; the base block takes the last entry's Flags [11] and hive bins size.
* Old format (File type 1): a log applies when its base block is valid (sequence numbers equal)
  and its Last written timestamp equals the primary's (or, when the primary's base block is
  unusable, the first hive bin's Timestamp) [old 2, 3]. Its dirty vector ("DIRT" bitmap, one bit
  per 512-byte page of the hive bins data) says where each 512-byte dirty page goes [old pages 2].
* After replay every hive bin header is checked (signature, offset, size) over the whole hive
  bins data; a bad dirty bin is refused rather than "healed" [new 10]: we never guess data.

* A log whose base block is invalid, or whose RmId/LogId/TmId GUIDs (fixed for a hive's life and
  copied into its logs' base blocks) differ from the primary's, is not applied; its entries still
  count when deciding whether anything newer than the run would be dropped.

Refusals (LogError, nothing applied, nothing written): a dirty hive with no usable log; logs
whose entries do not continue the primary's sequence (regipy's SYSTEM_B); a damaged entry, a gap
or a log cut short, with newer entries after the run (applying the run would silently drop
changes Windows committed); an old-format log of another write (timestamp differs) when it is
the only one; two applicable old-format logs that disagree, or an old-format and a new-format log
that both apply; a dirty hive bin written by a log. A last entry whose pages fail Hash-1, with
nothing after it, is the ordinary trace of a crash during a log write (those changes were never
committed): the run before it is applied, as Windows does [8], with a warning. Pass
``allow_partial=True`` to accept Windows' behaviour in the other cases too (apply the run, warn).

The final base block (checked against hives recovered by Windows, yarp's
RecoveredHive_Windows10 and RecoveredHive_Windows7, which differ from the primary only there):
* new format: the base block used (primary's, or the log's) with both sequence numbers set to the
  last applied sequence number + 1 (an entry N is written when the hive's secondary sequence
  number is N, so after N the next write would be N + 1: Windows' own result for yarp's
  NewDirtyHive1, entries 2..5, is 6/6), Flags and Hive bins data size from the last entry,
  everything else (Last written timestamp included) kept, checksum recomputed;
* old format: the log's base block (its first sector is the copy of the in-memory base block
  that the interrupted write was storing, sequence numbers already equal [old 5]) with File type
  0, the primary's bytes 512..4095 kept, checksum recomputed.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field
from pathlib import Path

from offline_fix.errors import NotFound, PermissionDenied
from offline_fix.hive.baseblock import (
    BASE_BLOCK_SIZE,
    FILE_TYPE_LOG_NEW,
    FILE_TYPE_LOG_OLD,
    FILE_TYPE_PRIMARY,
    HBIN_START,
    BaseBlock,
)
from offline_fix.hive.errors import BaseBlockError, HiveError, LogError
from offline_fix.hive.marvin import marvin32_bytes
from offline_fix.hive.structures import (
    DIRT_SIGNATURE,
    DIRTY_PAGE_REF,
    DIRTY_PAGE_SIZE,
    HBIN_ALIGN,
    HBIN_HEADER,
    HBIN_SIGNATURE,
    HVLE_SIGNATURE,
    LOG_ENTRY,
    LOG_ENTRY_HASH1_COVERS,
    LOG_ENTRY_HASH2_COVERS,
    LOG_SECTOR,
)

LOG_SUFFIXES = (".LOG1", ".LOG2", ".LOG")  # the order the specification replays them in
SEQ_MOD = 1 << 32
# A hive bins data size beyond this is refused: real hives stay far below 2 GiB, and a forged
# entry or log header must not make us allocate gigabytes.
MAX_HIVE_BINS_SIZE = 0x7FFFF000


# -- results ------------------------------------------------------------------------------------

@dataclass
class Recovery:
    data: bytes  # the whole recovered, clean hive (the primary unchanged when it was clean)
    applied_entries: list[int]  # new format: sequence numbers; old format: dirty pages per log
    logs_used: list[str]
    last_sequence: int | None  # new format: last applied entry; old format: the log's sequence
    format: str | None  # "new", "old", or None when nothing was applied
    was_dirty: bool
    base_block_from: str  # "primary" or the name of the log whose base block was used
    pages_applied: int = 0
    warnings: list[str] = field(default_factory=list)

    @property
    def base_block(self) -> BaseBlock:
        return BaseBlock.parse(self.data[:BASE_BLOCK_SIZE], what="recovered base block")

    def to_dict(self) -> dict:
        block = self.base_block
        return {
            "was_dirty": self.was_dirty,
            "format": self.format,
            "applied_entries": list(self.applied_entries),
            "logs_used": list(self.logs_used),
            "last_sequence": self.last_sequence,
            "pages_applied": self.pages_applied,
            "base_block_from": self.base_block_from,
            "sequence": [block.sequence1, block.sequence2],
            "hive_bins_size": block.hive_bins_size,
            "size": len(self.data),
            "sha256": hashlib.sha256(self.data).hexdigest(),
            "warnings": list(self.warnings),
        }


@dataclass(frozen=True)
class LogEntry:
    """One HvLE record found in a new-format log (offsets are offsets in the log file)."""

    log: str
    offset: int
    size: int
    flags: int
    sequence: int
    hive_bins_size: int
    pages: tuple[tuple[int, int, int], ...]  # (offset in hive bins data, size, offset in the log)
    hash1: bytes
    problem: str | None = None  # why the entry may not be applied (None: header sound)
    truncated: bool = False  # the entry runs past the end of the file: the log was cut short


# -- finding logs ---------------------------------------------------------------------------------

def find_logs(hive_path: str | os.PathLike) -> list[Path]:
    """HIVE.LOG1, HIVE.LOG2 and HIVE.LOG next to the hive, in that order, names compared without
    regard to case (copies from Windows often change case). Only existing regular files."""
    hive = Path(hive_path)
    folder = hive.parent
    try:
        names = {entry.name.lower(): entry for entry in os.scandir(folder)}
    except (FileNotFoundError, NotADirectoryError):
        return []
    except PermissionError as exc:
        raise PermissionDenied(f"cannot list the folder of the hive to find its logs: {exc.strerror}",
                               path=str(folder)) from exc
    found = []
    for suffix in LOG_SUFFIXES:
        entry = names.get((hive.name + suffix).lower())
        if entry is not None and entry.is_file():
            found.append(folder / entry.name)
    return found


# -- helpers --------------------------------------------------------------------------------------

def _take(buf, offset: int, length: int, what: str, name: str) -> bytes:
    """Exactly ``length`` bytes at ``offset`` or a LogError naming them."""
    if offset < 0 or length < 0 or offset + length > len(buf):
        raise LogError(f"{name}: {what} runs past the end of the file", path=name, offset=offset,
                       field=what, expected=f"{length} bytes", found=f"{max(0, len(buf) - offset)} bytes")
    return bytes(buf[offset:offset + length])


def _seq_after(a: int, b: int) -> bool:
    """a comes after b in 32-bit sequence arithmetic (sequence numbers wrap)."""
    d = (a - b) % SEQ_MOD
    return 0 < d < SEQ_MOD // 2


def _usable_primary_block(primary: bytes) -> tuple[BaseBlock | None, str | None]:
    """The primary's base block when it can head the recovered hive, else (None, why)."""
    try:
        block = BaseBlock.parse(primary[:BASE_BLOCK_SIZE], what="primary base block")
    except BaseBlockError as exc:
        return None, str(exc)
    if len(primary) < BASE_BLOCK_SIZE:
        return None, f"primary file is {len(primary)} bytes, shorter than its base block"
    if not block.checksum_ok:
        return None, f"primary base block checksum {block.stored_checksum:#x} != {block.computed_checksum:#x}"
    problems = block.problems()
    if problems:
        return None, "primary base block: " + "; ".join(problems)
    return block, None


def _is_clean(primary: bytes) -> bool:
    """Not dirty in the specification's sense: a right checksum and equal sequence numbers."""
    try:
        block = BaseBlock.parse(primary[:BASE_BLOCK_SIZE], what="primary base block")
    except BaseBlockError:
        return False
    return len(primary) >= BASE_BLOCK_SIZE and not block.dirty


class _Log:
    """A log file's bytes and base block (None when the base block is unusable)."""

    def __init__(self, name: str, data: bytes) -> None:
        self.name = name
        self.data = data
        self.block: BaseBlock | None = None
        self.problem: str | None = None
        try:
            block = BaseBlock.parse(data[:LOG_SECTOR], what=f"{name} base block")
        except BaseBlockError as exc:
            self.problem = str(exc)
            return
        if not block.checksum_ok:
            self.problem = f"{name}: base block checksum {block.stored_checksum:#x} != {block.computed_checksum:#x}"
        elif not block.sequences_match:
            self.problem = f"{name}: base block sequence numbers differ ({block.sequence1} != {block.sequence2})"
        elif block.file_type not in (FILE_TYPE_LOG_OLD, FILE_TYPE_LOG_NEW):
            self.problem = f"{name}: file type {block.file_type} is not a transaction log (1 or 6)"
        elif block.problems():
            self.problem = f"{name}: " + "; ".join(block.problems())
        elif block.hive_bins_size > MAX_HIVE_BINS_SIZE:
            self.problem = f"{name}: hive bins data size {block.hive_bins_size} is beyond any hive's"
        self.block = block

    @property
    def valid(self) -> bool:
        return self.problem is None

    def check_identity(self, primary: BaseBlock | None) -> None:
        """A log whose resource-manager GUIDs (RmId, LogId, TmId: fixed for a hive's life, copied
        into every log's base block) differ from the primary's belongs to another hive: not used.
        Zero GUIDs (hives written by other tools, or before Windows Vista) are not compared."""
        if primary is None or self.block is None or self.problem is not None:
            return
        for field_name in ("rm_id", "log_id", "tm_id"):
            ours, theirs = getattr(self.block, field_name), getattr(primary, field_name)
            if any(ours) and any(theirs) and ours != theirs:
                self.problem = (f"{self.name}: belongs to another hive ({field_name} {ours.hex()} "
                                f"differs from the primary's {theirs.hex()})")
                return

    @property
    def is_new(self) -> bool:
        if self.block is not None and self.block.file_type == FILE_TYPE_LOG_NEW:
            return True
        return self.data[LOG_SECTOR:LOG_SECTOR + 4] == HVLE_SIGNATURE

    def primary_block(self, primary: bytes) -> BaseBlock:
        """This log's base block made into a primary's: its first sector, File type 0, the
        primary's bytes 512..4095 when it has them, checksum recomputed."""
        tail = bytes(primary[LOG_SECTOR:BASE_BLOCK_SIZE]).ljust(BASE_BLOCK_SIZE - LOG_SECTOR, b"\x00")
        raw = bytes(self.data[:LOG_SECTOR]) + tail
        return BaseBlock.parse(raw, what=f"{self.name} base block").updated(file_type=FILE_TYPE_PRIMARY)


# -- new format -----------------------------------------------------------------------------------

def _parse_entry(log: _Log, off: int) -> LogEntry | None:
    """The HvLE entry at ``off`` or None when there is none (no signature, or its Hash-2 is
    wrong so nothing in its header can be trusted). A sound header with bad contents gives an
    entry with ``problem`` set."""
    data = log.data
    if off + LOG_ENTRY.size > len(data) or data[off:off + 4] != HVLE_SIGNATURE:
        return None
    _sig, size, flags, seq, bins_size, count, hash1, hash2 = LOG_ENTRY.unpack_from(data, off)
    if marvin32_bytes(data[off:off + LOG_ENTRY_HASH2_COVERS]) != hash2:
        return None

    def bad(problem: str, truncated: bool = False) -> LogEntry:
        return LogEntry(log.name, off, size, flags, seq, bins_size, (), hash1,
                        problem=f"{log.name}: log entry {seq} at offset {off:#x}: {problem}",
                        truncated=truncated)

    if size < LOG_ENTRY.size or size % LOG_SECTOR:
        return bad(f"size {size} is not a multiple of {LOG_SECTOR}")
    if off + size > len(data):
        return bad(f"size {size} runs past the end of the log ({len(data)} bytes): truncated", True)
    if bins_size == 0 or bins_size % HBIN_ALIGN or bins_size > MAX_HIVE_BINS_SIZE:
        return bad(f"hive bins data size {bins_size} is not a non-zero multiple of {HBIN_ALIGN}")
    refs_end = LOG_ENTRY.size + count * DIRTY_PAGE_REF.size
    if refs_end > size:
        return bad(f"{count} dirty page references do not fit in {size} bytes")
    pages = []
    cursor = off + refs_end
    for i in range(count):
        page_off, page_size = DIRTY_PAGE_REF.unpack_from(data, off + LOG_ENTRY.size + i * DIRTY_PAGE_REF.size)
        if page_size == 0 or page_size % LOG_SECTOR or page_off % LOG_SECTOR:
            return bad(f"dirty page {i} ({page_off:#x}, {page_size}) is not 512-byte aligned")
        if page_off + page_size > bins_size:
            return bad(f"dirty page {i} ({page_off:#x}, {page_size}) lies beyond the hive bins data size {bins_size}")
        if cursor + page_size > off + size:
            return bad(f"dirty page {i} runs past the end of the entry")
        pages.append((page_off, page_size, cursor))
        cursor += page_size
    return LogEntry(log.name, off, size, flags, seq, bins_size, tuple(pages), hash1)


def scan_entries(log: _Log) -> list[LogEntry]:
    """Every log entry whose header is authentic (Hash-2 right), in file order. The whole file is
    searched at 512-byte steps, so that an entry after a damaged one is still seen (to detect a
    gap); after a sound entry the search jumps over it."""
    entries = []
    off = LOG_SECTOR  # entries start at the second sector; any sector size is a multiple of 512
    data_len = len(log.data)
    while off + LOG_ENTRY.size <= data_len:
        entry = _parse_entry(log, off)
        if entry is None:
            off += LOG_SECTOR
            continue
        entries.append(entry)
        off += entry.size if entry.problem is None else LOG_SECTOR
    return entries


def _hash1_problem(log: _Log, entry: LogEntry) -> str | None:
    body = memoryview(log.data)[entry.offset + LOG_ENTRY_HASH1_COVERS:entry.offset + entry.size]
    if marvin32_bytes(body) != entry.hash1:
        return f"{log.name}: log entry {entry.sequence} at offset {entry.offset:#x}: Hash-1 mismatch (pages damaged)"
    return None


def _plan_run(logs: list[_Log], entries: dict[str, list[LogEntry]], start: int,
              ) -> tuple[list[tuple[_Log, LogEntry]], LogEntry | None, str | None]:
    """The run of entries continuing ``start``: (entries to apply, the bogus entry that stopped
    it and why, or None, None when no entry continues the run).

    At each step the log we are in keeps going while its next entry has the next number; when it
    stops, the first log (LOG1, LOG2, LOG order) whose first entry not older than the expected
    number has exactly that number continues the run. Each step consumes one entry, so the loop
    ends after at most as many steps as there are entries."""
    by_name = {log.name: log for log in logs}
    cursor = {log.name: 0 for log in logs}
    run: list[tuple[_Log, LogEntry]] = []
    expected = start
    current: str | None = None
    stop_entry: LogEntry | None = None
    stopped: str | None = None
    budget = sum(len(v) for v in entries.values()) + 1
    while budget > 0:
        budget -= 1
        candidates = []
        for log in logs:
            lst = entries[log.name]
            i = cursor[log.name]
            while i < len(lst) and _seq_after(expected, lst[i].sequence):
                i += 1  # older entries (already in the primary) are skipped [5]
            cursor[log.name] = i
            if i < len(lst) and lst[i].sequence == expected:
                candidates.append(log.name)
        if not candidates:
            break
        name = current if current in candidates else candidates[0]
        entry = entries[name][cursor[name]]
        problem = entry.problem or _hash1_problem(by_name[name], entry)
        if problem is not None:
            stop_entry, stopped = entry, problem  # recovery stops before a bogus entry [8]
            break
        run.append((by_name[name], entry))
        cursor[name] += 1
        current = name
        expected = (expected + 1) % SEQ_MOD
    return run, stop_entry, stopped


def _recover_new(primary: bytes, logs: list[_Log], block: BaseBlock | None, why_not: str | None,
                 allow_partial: bool) -> Recovery:
    warnings: list[str] = []
    for log in logs:
        if not log.valid:
            warnings.append(f"{log.problem}; its entries are not applied")
    usable = [log for log in logs if log.valid]
    base_from = "primary"
    if block is None:
        donors = sorted(usable, key=lambda log: log.block.sequence2)
        if not donors:
            raise BaseBlockError(f"neither the primary ({why_not}) nor any log has a usable base block")
        donor = donors[0]
        block = donor.primary_block(primary)
        base_from = donor.name
        warnings.append(f"primary base block unusable ({why_not}); taken from {donor.name}")
    start = block.sequence2

    entries = {log.name: scan_entries(log) for log in logs}
    usable_entries = {log.name: entries[log.name] for log in usable}
    run, stop_entry, stopped = _plan_run(usable, usable_entries, start)
    if not run:
        found = sorted({e.sequence for lst in entries.values() for e in lst})
        detail = f"entries found: {_ranges(found)}" if found else "no log entry found"
        reason = "".join(f"; {why}" for why in [stopped] + [log.problem for log in logs] if why)
        raise LogError(f"the logs do not continue the primary's sequence: expected entry {start}, "
                       f"{detail}{reason}", field="SequenceNumber", expected=start,
                       found=found[0] if found else None)
    last = run[-1][1].sequence
    left_out = sorted({e.sequence for lst in entries.values() for e in lst if _seq_after(e.sequence, last)})
    if left_out:
        # Something newer than the run exists. The one case Windows' own writes produce is a torn
        # last entry (a crash while it was written: its pages fail Hash-1, nothing follows it);
        # its changes were never committed, so stopping before it loses nothing. Anything else
        # (a damaged entry with entries after it, a gap, a log cut short) would silently drop
        # committed changes: refused unless the caller accepts Windows' behaviour.
        message = (f"log entries after {last} cannot be applied ({_ranges(left_out)})"
                   + (f": {stopped}" if stopped else ": the sequence has a gap"))
        torn_last = (stop_entry is not None and not stop_entry.truncated
                     and left_out == [(last + 1) % SEQ_MOD])
        if not (allow_partial or torn_last):
            raise LogError(f"refusing a partial recovery: {message}", field="SequenceNumber",
                           expected=(last + 1) % SEQ_MOD, found=left_out[0])
        warnings.append(f"partial recovery, as Windows does: {message}")

    buf = bytearray(primary)
    pages = 0
    for log, entry in run:
        needed = HBIN_START + entry.hive_bins_size
        if len(buf) < needed:
            buf.extend(bytes(needed - len(buf)))  # the hive grows with the entry [9]
        data = log.data
        for page_off, page_size, src in entry.pages:
            dst = HBIN_START + page_off
            buf[dst:dst + page_size] = data[src:src + page_size]
            pages += 1
    final_entry = run[-1][1]
    next_seq = (last + 1) % SEQ_MOD
    block = block.updated(sequence1=next_seq, sequence2=next_seq, flags=final_entry.flags,
                          hive_bins_size=final_entry.hive_bins_size, file_type=FILE_TYPE_PRIMARY)
    dirty_ranges = [(p[0], p[0] + p[1]) for _, e in run for p in e.pages]
    _check_bins(buf, final_entry.hive_bins_size, dirty_ranges)
    buf[:BASE_BLOCK_SIZE] = block.to_bytes()
    return Recovery(
        data=bytes(buf), applied_entries=[e.sequence for _, e in run],
        logs_used=list(dict.fromkeys(log.name for log, _ in run)), last_sequence=last, format="new",
        was_dirty=True, base_block_from=base_from, pages_applied=pages, warnings=warnings,
    )


def _ranges(numbers: list[int]) -> str:
    """[1, 2, 3, 7] -> '1..3, 7'."""
    if not numbers:
        return "none"
    parts = []
    first = prev = numbers[0]
    for n in numbers[1:] + [None]:
        if n is not None and n == prev + 1:
            prev = n
            continue
        parts.append(str(first) if first == prev else f"{first}..{prev}")
        if n is not None:
            first = prev = n
    return ", ".join(parts)


# -- old format -----------------------------------------------------------------------------------

def _old_pages(log: _Log) -> list[tuple[int, int]]:
    """(page index in the hive bins data, offset in the log) of every dirty page of an old-format
    log, checked against the file's length."""
    block = log.block
    sector = LOG_SECTOR * max(1, block.clustering_factor)
    vector_off = sector
    bits = block.hive_bins_size // DIRTY_PAGE_SIZE
    bitmap_len = (bits + 7) // 8
    if _take(log.data, vector_off, 4, "dirty vector signature", log.name) != DIRT_SIGNATURE:
        raise LogError(f"{log.name}: no dirty vector", path=log.name, offset=vector_off,
                       field="Signature", expected=DIRT_SIGNATURE, found=bytes(log.data[vector_off:vector_off + 4]))
    bitmap = _take(log.data, vector_off + 4, bitmap_len, "dirty vector bitmap", log.name)
    vector_end = vector_off + 4 + bitmap_len
    page_off = -(-vector_end // sector) * sector  # dirty pages start at the next sector
    pages = []
    for byte_index, byte in enumerate(bitmap):
        if not byte:
            continue
        for bit in range(8):
            index = byte_index * 8 + bit
            if byte >> bit & 1 and index < bits:  # bits past the bitmap's length are padding
                pages.append((index, page_off))
                page_off += DIRTY_PAGE_SIZE
    if pages and pages[-1][1] + DIRTY_PAGE_SIZE > len(log.data):
        missing = pages[-1][1] + DIRTY_PAGE_SIZE - len(log.data)
        raise LogError(f"{log.name}: truncated: {len(pages)} dirty pages announced, {missing} bytes missing",
                       path=log.name, offset=len(log.data), field="Dirty pages",
                       expected=pages[-1][1] + DIRTY_PAGE_SIZE, found=len(log.data))
    return pages


def _recover_old(primary: bytes, logs: list[_Log], block: BaseBlock | None, why_not: str | None) -> Recovery:
    warnings: list[str] = []
    if block is not None:
        stamp = block.timestamp
    elif len(primary) >= HBIN_START + HBIN_HEADER.size and primary[HBIN_START:HBIN_START + 4] == HBIN_SIGNATURE:
        stamp = HBIN_HEADER.unpack_from(primary, HBIN_START)[4]  # the first bin's Timestamp
        warnings.append(f"primary base block unusable ({why_not}); matching logs by the first hive bin's timestamp")
    else:
        raise BaseBlockError(f"primary base block unusable ({why_not}) and no first hive bin to match logs by")
    if block is None and not any(log.valid for log in logs):
        raise BaseBlockError(f"neither the primary ({why_not}) nor any log has a usable base block: "
                             + "; ".join(log.problem for log in logs))
    applicable = []
    for log in logs:
        if not log.valid:
            warnings.append(f"{log.problem}; not applied")
        elif log.block.timestamp != stamp:
            warnings.append(f"{log.name}: Last written timestamp {log.block.timestamp:#x} differs from the "
                            f"primary's {stamp:#x}: a log of another write or another hive, not applied")
        else:
            applicable.append(log)
    if not applicable:
        raise LogError("no old-format log applies to this hive: " + "; ".join(warnings),
                       field="TimeStamp", expected=stamp)
    if len(applicable) > 1:
        if len({log.data for log in applicable}) > 1:
            raise LogError("two old-format logs apply to this hive and disagree: "
                           + ", ".join(log.name for log in applicable), field="TimeStamp", expected=stamp)
    log = applicable[0]
    pages = _old_pages(log)
    bins_size = log.block.hive_bins_size
    buf = bytearray(primary)
    if len(buf) < HBIN_START + bins_size:
        buf.extend(bytes(HBIN_START + bins_size - len(buf)))
    for index, src in pages:
        dst = HBIN_START + index * DIRTY_PAGE_SIZE
        buf[dst:dst + DIRTY_PAGE_SIZE] = log.data[src:src + DIRTY_PAGE_SIZE]
    dirty_ranges = [(i * DIRTY_PAGE_SIZE, (i + 1) * DIRTY_PAGE_SIZE) for i, _ in pages]
    _check_bins(buf, bins_size, dirty_ranges)
    final = log.primary_block(primary)
    buf[:BASE_BLOCK_SIZE] = final.to_bytes()
    return Recovery(
        data=bytes(buf), applied_entries=[len(pages)], logs_used=[log.name],
        last_sequence=log.block.sequence1, format="old", was_dirty=True, base_block_from=log.name,
        pages_applied=len(pages), warnings=warnings,
    )


# -- hive bins check ------------------------------------------------------------------------------

def _check_bins(buf: bytearray, bins_size: int, dirty: list[tuple[int, int]]) -> None:
    """Every hive bin from 0 to ``bins_size`` must have its signature, its own offset and a size
    that is a multiple of 4096 inside the hive bins data. A bad bin that a log wrote is a damaged
    log (LogError); one the logs did not touch is a damaged primary (HiveError)."""
    if len(buf) < HBIN_START + bins_size:
        raise HiveError("recovered hive is shorter than its hive bins data size",
                        offset=len(buf), field="Hive bins data size", expected=HBIN_START + bins_size, found=len(buf))
    def from_log(start: int, end: int) -> bool:
        return any(a < end and start < b for a, b in dirty)

    off = 0
    while off < bins_size:
        sig, self_off, size, _reserved, _stamp, _spare = HBIN_HEADER.unpack_from(buf, HBIN_START + off)
        problem = None
        if sig != HBIN_SIGNATURE:
            problem = ("Signature", HBIN_SIGNATURE, sig)
        elif self_off != off:
            problem = ("Offset", off, self_off)
        elif size < HBIN_ALIGN or size % HBIN_ALIGN or off + size > bins_size:
            problem = ("Size", f"a multiple of {HBIN_ALIGN} within {bins_size - off}", size)
        if problem is not None:
            name, expected, found = problem
            error = LogError if from_log(off, off + HBIN_HEADER.size) else HiveError
            source = "written by the log" if error is LogError else "in the primary file"
            raise error(f"recovered hive bin at {off:#x} is invalid ({source})", offset=HBIN_START + off,
                        field=name, expected=expected, found=found)
        off += size  # size >= 4096: the walk always advances


# -- entry point ----------------------------------------------------------------------------------

def recover(primary: bytes | bytearray, logs: list[tuple[str, bytes]], *,
            allow_partial: bool = False) -> Recovery:
    """Replay the transaction logs of a dirty hive; see the module docstring for every rule.

    ``primary``: the primary file's bytes; ``logs``: (name, bytes) of each log, LOG1 first (the
    order only breaks ties). Returns a Recovery whose ``data`` is the whole clean hive. Raises
    LogError when the logs cannot be applied safely, BaseBlockError when no base block is usable.
    """
    primary = bytes(primary)
    if _is_clean(primary):
        return Recovery(data=primary, applied_entries=[], logs_used=[], last_sequence=None, format=None,
                        was_dirty=False, base_block_from="primary",
                        warnings=["hive is not dirty: its logs are ignored, as Windows does"])
    block, why_not = _usable_primary_block(primary)
    if block is None and len(primary) < BASE_BLOCK_SIZE:
        raise BaseBlockError(f"primary file unusable: {why_not}", offset=0, expected=BASE_BLOCK_SIZE,
                             found=len(primary))
    present = []
    empty = []
    seen: set[str] = set()
    for name, data in logs:
        name = str(name)
        while name in seen:  # names key the bookkeeping below: keep them unique
            name += "'"
        seen.add(name)
        if not data.strip(b"\x00"):
            empty.append(name)  # an empty .LOG kept for older Windows, or a zeroed log
            continue
        log = _Log(name, bytes(data))
        log.check_identity(block)
        present.append(log)
    if not present:
        what = f" (empty: {', '.join(empty)})" if empty else ""
        raise LogError(f"hive is dirty and has no transaction log to replay{what}",
                       field="Sequence", expected="logs", found="none")
    new_logs = [log for log in present if log.is_new]
    old_logs = [log for log in present if not log.is_new]
    notes = []
    if new_logs and old_logs:
        # Next to new-format logs an old-format one is a leftover of an older Windows (its
        # timestamp is not the primary's) or damaged: ignored. One that would apply as well is a
        # contradiction Windows does not write: refused.
        for log in old_logs:
            if log.valid and (block is None or log.block.timestamp == block.timestamp):
                raise LogError("both an old-format and a new-format log apply to this hive: "
                               + ", ".join(x.name for x in present), path=log.name, field="File type")
            why = log.problem or f"{log.name}: old-format log of another write (timestamp differs)"
            notes.append(f"{why}; ignored next to new-format logs")
    if new_logs:
        result = _recover_new(primary, new_logs, block, why_not, allow_partial)
    else:
        result = _recover_old(primary, old_logs, block, why_not)
    result.warnings[:0] = notes + [f"{name}: empty, skipped" for name in empty]
    return result


def recover_files(hive_path: str | os.PathLike, log_paths: list[str | os.PathLike] | None = None, *,
                  allow_partial: bool = False) -> Recovery:
    """recover() on files: the logs found next to the hive unless ``log_paths`` are given."""
    hive = Path(hive_path)
    paths = [Path(p) for p in log_paths] if log_paths is not None else find_logs(hive)
    logs = [(p.name, _read_file(p)) for p in paths]
    return recover(_read_file(hive), logs, allow_partial=allow_partial)


def _read_file(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except (FileNotFoundError, IsADirectoryError, NotADirectoryError) as exc:
        raise NotFound(f"no such file: {exc.strerror}", path=str(path)) from exc
    except PermissionError as exc:
        raise PermissionDenied(f"cannot read: {exc.strerror}", path=str(path)) from exc
