"""What every fuzz target shares: the rule, the runner, and the checksum fixers.

The rule: whatever bytes a parser is given, only an ``OfflineFixError`` subclass may escape it
(CorruptInput, Unsupported, Refused ...). Any other exception, a hang (libFuzzer ``-timeout``) or
a memory blow-up (``-rss_limit_mb``) is a finding.

Each target module (``tests/fuzz/fuzz_<format>.py``) defines ``TARGET = Target(...)``: a function
of one input, a generator of seed inputs, and a size limit. The same ``TARGET`` serves three
runners: atheris (``python -m tests.fuzz.fuzz_hive [libFuzzer flags] CORPUS...``, used by
``run_all.py``), the short hypothesis runs and the corpus replay of
``tests/test_fuzz_regressions.py``.

Parsers that guard their input with a checksum or a keyed hash (REGF base block, HvLE Marvin32
hashes, VHDX CRC-32C, VHD footers, GPT CRC32) would turn away nearly every mutation at the first
check. Targets therefore take a flag byte: when its low bit is set the checksums are recomputed
after mutation (``fix_*`` below), so that the fuzzer also reaches the code behind them.
"""

from __future__ import annotations

import importlib
import struct
import sys
import zlib
from dataclasses import dataclass
from typing import Callable

MAX_LEN_DEFAULT = 1 << 16


@dataclass(frozen=True)
class Target:
    name: str
    one_input: Callable[[bytes], None]  # parse the input; return normally or raise OfflineFixError
    seeds: Callable[[], list[bytes]]  # seed inputs made by code, or cut from real data at run time
    max_len: int = MAX_LEN_DEFAULT
    instrument: tuple[str, ...] = ("offline_fix",)

    def check(self, data: bytes) -> None:
        """Run one input under the rule: an OfflineFixError is a clean refusal; anything else
        propagates (a finding)."""
        from offline_fix.errors import OfflineFixError

        try:
            self.one_input(data)
        except OfflineFixError:
            pass


def flag_split(data: bytes) -> tuple[int, bytes]:
    """(flag byte, rest): the first byte of an input steers the target (0 for an empty input)."""
    return (data[0], data[1:]) if data else (0, b"")


def split(data: bytes, parts: int) -> list[bytes]:
    """Cut DATA into PARTS pieces: a u32 length per piece but the last, then the pieces (lengths
    are clamped, so that any input splits)."""
    head = 4 * (parts - 1)
    lengths = struct.unpack_from(f"<{parts - 1}I", data.ljust(head, b"\x00"))
    rest = data[head:]
    out = []
    for n in lengths:
        n = min(n, len(rest))
        out.append(rest[:n])
        rest = rest[n:]
    out.append(rest)
    return out


def join(*parts: bytes) -> bytes:
    """The inverse of ``split``: seed inputs are made with it."""
    return struct.pack(f"<{len(parts) - 1}I", *(len(p) for p in parts[:-1])) + b"".join(parts)


# -- checksum fixers (used when the flag byte's low bit is set) -----------------------------------

def fix_regf_base_block(buf: bytearray) -> None:
    """Recompute the REGF base block checksum (XOR of the first 508 bytes' dwords, at 508)."""
    if len(buf) >= 512 and buf[:4] == b"regf":
        from offline_fix.hive.baseblock import CHECKSUM_OFFSET, checksum

        struct.pack_into("<I", buf, CHECKSUM_OFFSET, checksum(bytes(buf[:4096].ljust(4096, b"\x00"))))


def fix_hvle_hashes(log: bytearray) -> None:
    """Recompute Hash-1 and Hash-2 (Marvin32) of every HvLE entry at a 512-byte boundary whose
    size field keeps it inside the log."""
    from offline_fix.hive.marvin import marvin32_bytes
    from offline_fix.hive.structures import LOG_ENTRY, LOG_ENTRY_HASH1_COVERS, LOG_ENTRY_HASH2_COVERS

    off = 512
    while off + LOG_ENTRY.size <= len(log):
        if log[off:off + 4] != b"HvLE":
            off += 512
            continue
        (size,) = struct.unpack_from("<I", log, off + 4)
        end = off + size
        if LOG_ENTRY.size <= size and end <= len(log):  # Hash-1 (at 24) covers bytes 40..Size
            log[off + 24:off + 32] = marvin32_bytes(bytes(log[off + LOG_ENTRY_HASH1_COVERS:end]))
        log[off + 32:off + 40] = marvin32_bytes(bytes(log[off:off + LOG_ENTRY_HASH2_COVERS]))  # Hash-2: bytes 0..32
        off += max(512, (size // 512) * 512 if end <= len(log) else 512)


def fix_gpt(disk: bytearray, sector: int = 512) -> None:
    """Recompute the primary GPT header's CRCs (entry array first, then the header)."""
    at = sector
    if len(disk) < at + 92 or disk[at:at + 8] != b"EFI PART":
        return
    header_size = min(max(struct.unpack_from("<I", disk, at + 12)[0], 92), sector)
    entries_lba, count, entry_size = struct.unpack_from("<QII", disk, at + 72)
    start = entries_lba * sector
    length = count * entry_size
    if start < len(disk) and length <= len(disk):
        struct.pack_into("<I", disk, at + 88, zlib.crc32(bytes(disk[start:start + length])))
    disk[at + 16:at + 20] = bytes(4)
    struct.pack_into("<I", disk, at + 16, zlib.crc32(bytes(disk[at:at + header_size])))


# -- atheris --------------------------------------------------------------------------------------

def main(module: str) -> None:
    """Run MODULE's TARGET under atheris; libFuzzer's flags and corpus folders come from argv.

    MODULE is imported here, inside ``instrument_imports``, so that offline_fix's code is
    instrumented for coverage: a target module run as ``__main__`` has already imported it, so
    it re-executes itself through this module (``launch``)."""
    import atheris

    with atheris.instrument_imports(include=["offline_fix"]):
        target: Target = importlib.import_module(module).TARGET
        for seed in target.seeds()[:1]:  # loads every lazily imported module while instrumenting
            target.check(seed)
    atheris.Setup(sys.argv, target.check)
    atheris.Fuzz()


def launch(module: str) -> None:
    """``python -m tests.fuzz.fuzz_X ARGS`` -> ``python -m tests.fuzz.harness tests.fuzz.fuzz_X ARGS``."""
    import os

    os.execv(sys.executable, [sys.executable, "-m", "tests.fuzz.harness", module, *sys.argv[1:]])


def read_through(reader, what: str, size: int, *, chunk: int = 8192) -> None:
    """Read CHUNK bytes at the start, the middle and the end of a virtual disk through READER
    (``read(offset, length)``): each read returns exactly what was asked, or raises."""
    for offset in (0, max(0, size // 2 - chunk // 2), max(0, size - chunk)):
        length = min(chunk, size - offset)
        if length > 0:
            data = reader.read(offset, length)
            if len(data) != length:
                raise AssertionError(f"{what} read of {length} bytes at {offset} returned {len(data)}")


# -- sparse files (VHD/VHDX: megabytes of zeros around a few KiB of structures) -------------------

_RECORD = struct.Struct("<IH")  # file offset, length; the bytes follow
MAX_SPARSE_SIZE = 1 << 36


def sparse_encode(data: bytes, *, gap: int = 64) -> bytes:
    """A file as: u64 size, then (u32 offset, u16 length, bytes) for each non-zero run (runs less
    than GAP zero bytes apart are merged; a run is at most 65535 bytes)."""
    out = bytearray(struct.pack("<Q", len(data)))
    pos, n = 0, len(data)
    while pos < n:
        while pos < n and data[pos] == 0:
            pos += 1
        if pos >= n:
            break
        end = pos
        zeros = 0
        while end < n and end - pos < 0xFFFF and zeros < gap:
            zeros = zeros + 1 if data[end] == 0 else 0
            end += 1
        end -= zeros
        out += _RECORD.pack(pos, end - pos) + data[pos:end]
        pos = end
    return bytes(out)


def sparse_input(data: bytes, fix) -> "SparseFile":
    """The sparse file of a flag-byte input; FIX(file) recomputes its checksums when bit 0 is set."""
    flags, body = flag_split(data)
    f = SparseFile(body)
    if flags & 1:
        fix(f)
    return f


class SparseFile:
    """A read-only, seekable file object decoded from ``sparse_encode``'s form; any input decodes
    (sizes and records are clamped). It has no ``fileno``, as parsers of file objects expect."""

    def __init__(self, encoded: bytes) -> None:
        (size,) = struct.unpack_from("<Q", encoded.ljust(8, b"\x00"))
        self.size = min(size, MAX_SPARSE_SIZE)
        self.records: list[tuple[int, bytes]] = []
        pos = 8
        while pos + _RECORD.size <= len(encoded):
            offset, length = _RECORD.unpack_from(encoded, pos)
            pos += _RECORD.size
            chunk = encoded[pos:pos + length]
            pos += length
            if offset < self.size:
                self.records.append((offset, chunk[:self.size - offset]))
        self.pos = 0
        self.name = "<sparse>"

    def seek(self, offset: int, whence: int = 0) -> int:
        base = {0: 0, 1: self.pos, 2: self.size}[whence]
        if base + offset < 0:
            raise ValueError("negative seek position")
        self.pos = base + offset
        return self.pos

    def tell(self) -> int:
        return self.pos

    def read(self, n: int = -1) -> bytes:
        start = min(self.pos, self.size)
        end = self.size if n is None or n < 0 else min(self.size, start + n)
        out = bytearray(end - start)
        for offset, chunk in self.records:
            lo, hi = max(start, offset), min(end, offset + len(chunk))
            if lo < hi:
                out[lo - start:hi - start] = chunk[lo - offset:hi - offset]
        self.pos = end
        return bytes(out)

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def close(self) -> None:
        pass


if __name__ == "__main__":
    _module = sys.argv.pop(1)
    main(_module)
