"""The catalog index cache file: one binary file per indexed folder, in the state folder.

Layout (all integers little-endian)::

    CACHE_HEADER   magic "OFXCATIX", version, entry count, digest count, CRC-32 of the rest,
                   then the byte length of each of the SECTIONS below, in order
    keys           UTF-8 (surrogateescape), NUL-separated: the catalogs' source keys (paths)
    names          same: file names
    statuses       same: ok, unsigned, empty, unparsable
    errors         same: error message, "" for none
    types          same: member list type, "" for none
    algorithms     same: the digest algorithm names used below
    sizes          int64[entries]   file size the entry was made from
    mtimes         int64[entries]   st_mtime_ns the entry was made from
    members        uint32[entries]  member count
    counts         uint32[entries]  number of digests of each entry
    lengths        uint32[digests]  length of each digest
    algorithm_ids  uint8[digests]   index into ``algorithms``
    digests        the digests, concatenated, entry after entry

Everything is read with bounds: a file that is short, long, of another version, or whose CRC,
counts or lengths disagree raises ``CacheError`` (the index then rebuilds and says why).
Written to a temporary file in the same folder and renamed over the old one (see ``save``).
"""

from __future__ import annotations

import os
import struct
import sys
import tempfile
import zlib
from array import array
from itertools import accumulate, chain
from typing import Callable, Iterable

from offline_fix.errors import CorruptInput

MAGIC = b"OFXCATIX"
VERSION = 2
SECTIONS = ("keys", "names", "statuses", "errors", "types", "algorithms", "sizes", "mtimes", "members",
            "counts", "lengths", "algorithm_ids", "digests")
# magic, version, entry count, digest count, CRC-32 of everything after the header, section lengths
CACHE_HEADER = struct.Struct("<8sIIII" + "Q" * len(SECTIONS))
assert CACHE_HEADER.size == 8 + 4 * 4 + 8 * len(SECTIONS)
_STRINGS = SECTIONS[:6]
MAX_ALGORITHMS = 256


class CacheError(CorruptInput):
    """A catalog index cache file that cannot be used as it is."""


# What an entry is made from, in this order (index.CatalogEntry's fields): key, name, size,
# mtime_ns, status, error, member_count, member_list_type, algorithms and digests (two lists of one
# length: each digest and the name of its algorithm).
FIELDS = ("key", "name", "size", "mtime_ns", "status", "error", "member_count", "member_list_type",
          "algorithms", "digests")


def _join(items: list[str]) -> bytes:
    return "\0".join(items).encode("utf-8", "surrogateescape")


def _split(blob: bytes, count: int, name: str) -> list[str]:
    items = blob.decode("utf-8", "surrogateescape").split("\0") if count else []
    if len(items) != count:
        raise CacheError("cache section has the wrong number of items", field=name, expected=count,
                         found=len(items))
    return items


def _ints(code: str, values) -> bytes:
    arr = array(code, values)
    if sys.byteorder == "big":
        arr.byteswap()
    return arr.tobytes()


def _unints(code: str, blob: bytes, count: int, name: str) -> array:
    arr = array(code)
    if len(blob) != count * arr.itemsize:
        raise CacheError("cache section has the wrong size", field=name, expected=count * arr.itemsize,
                         found=len(blob))
    arr.frombytes(blob)
    if sys.byteorder == "big":
        arr.byteswap()
    return arr


def encode(entries: list) -> bytes:
    """The cache file's bytes (``entries``: objects with the attributes FIELDS). Raises
    CacheError for what the format cannot hold (a NUL in a string, more than 256 algorithm
    names)."""
    if any(len(e.algorithms) != len(e.digests) for e in entries):
        raise CacheError("an entry's digests and algorithms differ in number")
    digests = list(chain.from_iterable(e.digests for e in entries))
    algorithms = {alg: i for i, alg in enumerate(sorted(set(chain.from_iterable(e.algorithms for e in entries))))}
    if len(algorithms) > MAX_ALGORITHMS:
        raise CacheError("too many digest algorithm names for the cache", expected=f"<= {MAX_ALGORITHMS}",
                         found=len(algorithms))
    algorithm_ids = bytes(map(algorithms.__getitem__, chain.from_iterable(e.algorithms for e in entries)))
    strings = [
        [e.key for e in entries], [e.name for e in entries], [e.status for e in entries],
        [e.error or "" for e in entries], [e.member_list_type or "" for e in entries], list(algorithms),
    ]
    joined = [_join(column) for column in strings]
    for column, blob in zip(strings, joined):
        if blob.count(b"\0") != max(len(column) - 1, 0):
            raise CacheError("a name holds a NUL character: not cached")
    sections = joined + [
        _ints("q", [e.size for e in entries]), _ints("q", [e.mtime_ns for e in entries]),
        _ints("I", [e.member_count for e in entries]), _ints("I", [len(e.digests) for e in entries]),
        _ints("I", map(len, digests)), algorithm_ids, b"".join(digests),
    ]
    crc = 0
    for section in sections:
        crc = zlib.crc32(section, crc)
    header = CACHE_HEADER.pack(MAGIC, VERSION, len(entries), len(digests), crc, *map(len, sections))
    return b"".join([header, *sections])


def decode(data: bytes, make: Callable) -> dict:
    """Entries by key, each ``make(*FIELDS)``; CacheError when the bytes are not a sound cache."""
    if len(data) < CACHE_HEADER.size:
        raise CacheError("cache file too short", expected=f">= {CACHE_HEADER.size} bytes", found=len(data))
    magic, version, count, ndigests, crc, *sizes = CACHE_HEADER.unpack_from(data)
    if magic != MAGIC:
        raise CacheError("not a catalog index cache", offset=0, field="magic", expected=MAGIC, found=magic[:8])
    if version != VERSION:
        raise CacheError("cache format changed", offset=8, field="version", expected=VERSION, found=version)
    if CACHE_HEADER.size + sum(sizes) != len(data):
        raise CacheError("cache file size does not match its header", expected=CACHE_HEADER.size + sum(sizes),
                         found=len(data))
    body = memoryview(data)[CACHE_HEADER.size:]
    if zlib.crc32(body) != crc:
        raise CacheError("cache checksum mismatch", field="crc32", expected=crc, found=zlib.crc32(body))
    parts = {}
    pos = 0
    for name, size in zip(SECTIONS, sizes):
        parts[name] = bytes(body[pos:pos + size])
        pos += size
    keys, names, statuses, errors, types = (_split(parts[n], count, n) for n in _STRINGS[:5])
    algorithms = parts["algorithms"].decode("utf-8", "surrogateescape").split("\0") if ndigests else []
    sizes_ = _unints("q", parts["sizes"], count, "sizes")
    mtimes = _unints("q", parts["mtimes"], count, "mtimes")
    members = _unints("I", parts["members"], count, "members")
    counts = _unints("I", parts["counts"], count, "counts")
    lengths = _unints("I", parts["lengths"], ndigests, "lengths")
    ids = parts["algorithm_ids"]
    blob = parts["digests"]
    if sum(counts) != ndigests or len(ids) != ndigests or sum(lengths) != len(blob):
        raise CacheError("cache digest tables disagree", field="counts", expected=ndigests, found=sum(counts))
    if ids and max(ids) >= len(algorithms):
        raise CacheError("cache digest algorithm out of range", field="algorithm_ids",
                         expected=f"< {len(algorithms)}", found=max(ids))
    ends = list(accumulate(lengths))
    digests = list(map(blob.__getitem__, map(slice, [0] + ends, ends)))
    algs = list(map(algorithms.__getitem__, ids))
    out = {}
    at = 0
    for i, key in enumerate(keys):
        n = counts[i]
        out[key] = make(key, names[i], sizes_[i], mtimes[i], statuses[i], errors[i] or None, members[i],
                        types[i] or None, algs[at:at + n], digests[at:at + n])
        at += n
    if len(out) != count:
        raise CacheError("cache holds a key twice", field="keys", expected=count, found=len(out))
    return out


def load(path: str, make: Callable) -> dict:
    """Read and decode; FileNotFoundError when there is no cache, CacheError when it is unusable."""
    try:
        with open(path, "rb") as f:
            data = f.read()
    except FileNotFoundError:
        raise
    except OSError as e:
        raise CacheError(f"cannot read the cache: {e.strerror or e}", path=path) from e
    try:
        return decode(data, make)
    except CacheError as e:
        e.path = path
        raise


def save(path: str, entries: Iterable) -> None:
    """Write through a temporary file in the same folder, renamed over the old cache. Unlike
    atomic.write_atomic there is no fsync (13 ms here, more than reading the whole cache): a
    cache torn by a power cut fails its CRC and is rebuilt. OSError or CacheError."""
    data = encode(list(entries))
    directory = os.path.dirname(path) or "."
    os.makedirs(directory, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".catalog-index-", dir=directory)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        if os.path.lexists(tmp):
            os.unlink(tmp)
        raise
