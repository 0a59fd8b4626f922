"""offline_fix/signing/catalog_scan.py: the fast member scan gives what the full parser gives.

Oracle: catalog.parse_catalog (whose member digests test_signing_catalog.py checks against an
independent asn1crypto reading and MANIFEST.md) on the same bytes, for real catalogs, catalogs
built by images.synth.signing (v1, v2, mixed, odd shapes) and thousands of mutations of them.
"""

from __future__ import annotations

import random
from datetime import timedelta

import pytest

from offline_fix.signing import catalog as C
from offline_fix.signing.catalog import CatalogError, parse_catalog
from offline_fix.signing.catalog_scan import ShapeCache, index_facts
from images.synth.signing import (
    CAT_MEMBERINFO2, CTL, MEMBER_V2, PINNED, CatFile, build_catalog, ctl, ctx, integer, make_ca, null,
    octets, oid, seq, set_, signed_data, utctime,
)

REAL = ("velociraptor/ntexe.cat", "signify/oem89.cat", "signify/catfiletest.cat")


@pytest.fixture(scope="module")
def ca():
    return make_ca("Scan")


def full(data: bytes):
    """What the index took from the full parser before catalog_scan existed."""
    try:
        cat = parse_catalog(data, details=False)
    except CatalogError as e:
        return ("error", str(e))
    return (cat.signed, len(cat.members), cat.member_list_type,
            [d for m in cat.members for d in m.index_digests()])


def fast(data: bytes, shapes: ShapeCache):
    try:
        facts = index_facts(data, shapes=shapes)
    except CatalogError as e:
        return ("error", str(e))
    assert len(facts.algorithms) == len(facts.digests)
    return (facts.signed, facts.member_count, facts.member_list_type, list(zip(facts.algorithms, facts.digests)))


def files(rng: random.Random, n: int, names=("a.sys", "bb.dll", "ccc.inf", "dddd.exe")) -> list[CatFile]:
    return [CatFile(rng.choice(names), rng.randbytes(20), rng.randbytes(32), pe=rng.random() < 0.7)
            for _ in range(n)]


@pytest.fixture(scope="module")
def generated(ca):
    rng = random.Random(6)
    out = [build_catalog(files(rng, rng.randint(1, 6)), ca, rng.choice([1, 2])) for _ in range(24)]
    out.append(build_catalog(files(rng, 3), None, 2))  # unsigned
    out.append(build_catalog([], ca, 2))               # no members
    # a v2 member whose tag is not its digest: indexed under both, never by the simple path
    odd = files(rng, 2)
    content = ctl(odd, 2).replace(odd[0].sha256, rng.randbytes(32), 1)
    out.append(signed_data(CTL, content, content[4:] if content[1] == 0x82 else content[3:], ca))
    return out


def test_equal_to_the_full_parser_on_generated_catalogs(generated):
    shapes = ShapeCache()
    for rounds in range(2):  # learning, then with every shape learned
        for data in generated:
            assert fast(data, shapes) == full(data)
    assert len(shapes) and shapes.simple_groups


@pytest.mark.realdata
def test_equal_on_real_catalogs(realdata):
    shapes = ShapeCache()
    for rel in REAL * 2:
        data = realdata(rel).read_bytes()
        assert fast(data, shapes) == full(data)
    ntexe = index_facts(realdata("velociraptor/ntexe.cat").read_bytes(), shapes=shapes)
    assert ntexe.member_count == 18 and ntexe.member_list_type == "catalog_list_member_v2"  # MANIFEST.md
    oem = index_facts(realdata("signify/oem89.cat").read_bytes(), shapes=shapes)
    assert (oem.algorithms, oem.digests) == (["sha1"], [bytes.fromhex("b1e795b69b4c2a901a8bc8e8b36e988c6c05d836")])
    assert not index_facts(realdata("signify/catfiletest.cat").read_bytes(), shapes=shapes).signed


def test_equal_on_mutated_catalogs(generated):
    """Byte flips, insertions and cuts anywhere: same facts, or the same error message."""
    rng = random.Random(61)
    shapes = ShapeCache()
    for data in generated:
        fast(data, shapes)  # learn the shapes first: mutations must not fool them
    for _ in range(1500):
        data = bytearray(rng.choice(generated))
        for _ in range(rng.randint(1, 3)):
            op, at = rng.random(), rng.randrange(len(data))
            if op < 0.7:
                data[at] = rng.randrange(256)
            elif op < 0.85:
                data.insert(at, rng.randrange(256))
            else:
                del data[at:]
                if not data:
                    data.append(0x30)
        assert fast(bytes(data), shapes) == full(bytes(data))


def test_uncommon_heads_take_the_general_walk(ca):
    """sequenceNumber, nextUpdate, a 20-byte list identifier: _common_head declines, same facts."""
    rng = random.Random(3)
    member = seq(octets(rng.randbytes(20)), set_(seq(oid(CAT_MEMBERINFO2), set_(ctx(0, b"")))))
    for extra in ([octets(rng.randbytes(20))], [octets(rng.randbytes(16)), integer(7)]):
        content = seq(seq(oid("1.3.6.1.4.1.311.12.1.1")), *extra, utctime(PINNED),
                      utctime(PINNED + timedelta(days=1)), seq(oid(MEMBER_V2), null()), seq(member))
        data = signed_data(CTL, content, content[2:] if content[1] < 0x80 else content[3:], ca)
        assert C._common_head(data, len(data)) is None
        assert fast(data, ShapeCache()) == full(data)
        assert full(data)[1] == 1
    plain = build_catalog(files(rng, 2), ca, 2)
    assert C._common_head(plain, len(plain)) is not None


def test_a_second_member_list_takes_the_general_walk(ca):
    """index_head reads one member list; a CTL holding two (or a list and other fields) is
    walked by catalog._parse, which scans both: same facts as the full parser."""
    rng = random.Random(4)
    members = [seq(octets(rng.randbytes(20)), set_(seq(oid(CAT_MEMBERINFO2), set_(ctx(0, b"")))))
               for _ in range(3)]
    head = (seq(oid("1.3.6.1.4.1.311.12.1.1")), octets(rng.randbytes(16)), utctime(PINNED),
            seq(oid(MEMBER_V2), null()))
    for lists in ([seq(*members)], [seq(*members[:1]), seq(*members[1:])], [seq(*members), integer(5)]):
        content = seq(*head, *lists)
        data = signed_data(CTL, content, content[2:] if content[1] < 0x80 else content[3:], ca)
        assert C._common_head(data, len(data)) is not None
        assert (C.index_head(data) is None) == (len(lists) == 2 and lists[1][0] == 0x30)
        shapes = ShapeCache()
        for _ in range(2):  # learning, then learned
            assert fast(data, shapes) == full(data)
        assert full(data)[1] == 3


def test_v1_tags_are_checked_against_their_own_digests(ca):
    """A v1 list is cut by the hex-tagged shapes, and its tags are compared with the hex text of
    its digests: a tag naming another member's digest, or in lower case, must give what the full
    parser gives (the tag indexed as a second digest), never the digests alone; nor may a
    tag whose terminator is a character."""
    rng = random.Random(5)
    members = files(rng, 3)
    healthy = build_catalog(members, ca, 1)
    text = [(f.sha1.hex().upper() + "\0").encode("utf-16-le") for f in members]
    swapped = healthy.replace(text[0], b"\xff" * len(text[0])).replace(text[1], text[0]).replace(b"\xff" * len(text[0]), text[1])
    lower = healthy.replace(text[2], (members[2].sha1.hex() + "\0").encode("utf-16-le"))
    no_nul = build_catalog(members, ca, 1).replace(text[0], (members[0].sha1.hex().upper() + "B").encode("utf-16-le"))
    shapes = ShapeCache()
    for _ in range(2):  # learning, then learned
        assert fast(healthy, shapes) == full(healthy)
    assert shapes.hex_shapes >= 1
    assert full(healthy)[3] == [("sha1", f.sha1) for f in members]
    for data in (swapped, lower, no_nul):
        assert data != healthy
        assert fast(data, shapes) == full(data)
    assert len(full(swapped)[3]) == 5  # two tags read as hashes other than their digests
    assert len(full(no_nul)[3]) == 3   # 41 characters: not a hash, only the digests count


def test_shapes_are_bounded(generated):
    shapes = ShapeCache(limit=2)
    for data in generated:
        assert fast(data, shapes) == full(data)
    assert len(shapes) == 2
