"""offline_fix/signing/index_cache.py: the binary catalog index cache.

Round trips are compared with the entries put in; every kind of damage must raise CacheError
(never another exception), which build_index reports as "rebuilt (...)".
"""

from __future__ import annotations

import random
import zlib

import pytest

from offline_fix.signing import index_cache as IC
from offline_fix.signing.index import CatalogEntry, build_index, catalog_sources
from images.synth.signing import CatFile, build_catalog, make_ca


def entries() -> list[CatalogEntry]:
    rng = random.Random(9)
    return [
        CatalogEntry("A.cat", "/c/A.cat", 10, 123456789012345678, "ok", None, 2, "catalog_list_member_v2",
                     ["sha1", "sha256", "1.2.3"], [rng.randbytes(20), rng.randbytes(32), b"xy"]),
        CatalogEntry("bad \udcff.cat", "/c/bad \udcff.cat", 0, -1, "unparsable", "broken (offset 0x2)", 0, None, [], []),
        CatalogEntry("é.cat", "/c/é.cat", 7, 0, "unsigned", None, 1, "catalog_list_member", ["sha1"], [b"\0" * 20]),
    ]


def test_round_trip():
    data = IC.encode(entries())
    back = IC.decode(data, CatalogEntry.cached)
    assert list(back.values()) == entries()
    assert IC.decode(IC.encode([]), CatalogEntry.cached) == {}


def test_damage_is_a_cache_error():
    data = IC.encode(entries())
    rng = random.Random(1)
    cases = [b"", b"{not json", data[:-1], data + b"\0", b"XXXXXXXX" + data[8:],
             data[:8] + (99).to_bytes(4, "little") + data[12:]]
    for _ in range(300):
        bad = bytearray(data)
        bad[rng.randrange(len(bad))] ^= 1 << rng.randrange(8)
        cases.append(bytes(bad))
    body = bytearray(data[IC.CACHE_HEADER.size:])  # consistent CRC, inconsistent tables
    body[-1] ^= 0xFF
    fields = list(IC.CACHE_HEADER.unpack_from(data))
    counts_at = sum(fields[5:5 + IC.SECTIONS.index("counts")])
    body[counts_at] ^= 1
    fields[4] = zlib.crc32(body)
    cases.append(IC.CACHE_HEADER.pack(*fields) + bytes(body))
    for bad in cases:
        with pytest.raises(IC.CacheError):
            IC.decode(bad, CatalogEntry.cached)


def test_names_with_nul_are_not_cached():
    e = entries()[0]
    e.key = "a\0b"
    with pytest.raises(IC.CacheError):
        IC.encode([e])


def test_what_the_format_cannot_hold_is_not_cached():
    uneven = entries()[0]
    uneven.algorithms = uneven.algorithms[:-1]  # three digests, two algorithm names
    with pytest.raises(IC.CacheError, match="differ in number"):
        IC.encode([uneven])
    other = entries()[2]
    other.algorithms = other.algorithms + ["sha256"]  # the totals agree, the entries do not
    with pytest.raises(IC.CacheError, match="differ in number"):
        IC.encode([uneven, other])
    many = [CatalogEntry(f"{i}.cat", f"/c/{i}.cat", 1, 1, "ok", None, 1, None, [f"alg{i}"], [bytes(20)])
            for i in range(IC.MAX_ALGORITHMS + 1)]
    with pytest.raises(IC.CacheError, match="too many"):
        IC.encode(many)
    assert len(IC.decode(IC.encode(many[:-1]), CatalogEntry.cached)) == IC.MAX_ALGORITHMS


def test_build_index_says_why_it_rebuilt(tmp_path):
    root = tmp_path / "CatRoot"
    root.mkdir()
    (root / "a.cat").write_bytes(build_catalog([CatFile("x.sys", b"\1" * 20, b"\2" * 32)], make_ca("Cache"), 2))
    state = tmp_path / "state"
    first = build_index(catalog_sources(root), state_dir=state)
    (cache,) = state.iterdir()
    raw = bytearray(cache.read_bytes())
    raw[-1] ^= 0xFF
    cache.write_bytes(bytes(raw))
    again = build_index(catalog_sources(root), state_dir=state)
    assert again.stats["cache"] == "rebuilt (cache checksum mismatch)" and again.stats["parsed"] == 1
    assert again.lookup(b"\2" * 32) == first.lookup(b"\2" * 32) != []
    assert build_index(catalog_sources(root), state_dir=state).stats["cache"] == "used"
