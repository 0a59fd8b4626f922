"""offline_fix/signing/index.py: the catalog index and its on-disk cache."""

from __future__ import annotations

import os
import shutil

import pytest

from offline_fix.errors import NotFound
from offline_fix.signing.index import (
    STATUS_EMPTY,
    STATUS_OK,
    STATUS_UNPARSABLE,
    STATUS_UNSIGNED,
    CatalogSource,
    build_index,
    catalog_sources,
)
from offline_fix.signing.verify import Status, TrustStore
from images.synth.signing import PINNED, CatFile, build_catalog, make_ca


@pytest.fixture(scope="module")
def ca():
    return make_ca("Index")


def files(n, start=0):
    return [CatFile(f"f{i}.sys", i.to_bytes(20, "big"), i.to_bytes(32, "big")) for i in range(start, start + n)]


@pytest.fixture
def catroot(tmp_path, ca):
    root = tmp_path / "CatRoot"
    root.mkdir()
    (root / "A.cat").write_bytes(build_catalog(files(3, 1), ca, 2))
    (root / "b.CAT").write_bytes(build_catalog(files(2, 10), ca, 1))
    (root / "unsigned.cat").write_bytes(build_catalog(files(1, 20), None, 2))
    (root / "empty.cat").write_bytes(b"")
    (root / "garbage.cat").write_bytes(b"\x30\x82\x10\x00garbage")
    (root / "notes.txt").write_text("not a catalog")
    return root


def test_index_lookups_and_statuses(catroot, ca):
    idx = build_index(catalog_sources(catroot))
    assert [e.name for e in sorted(idx.entries.values(), key=lambda e: e.name.lower())] == \
        ["A.cat", "b.CAT", "empty.cat", "garbage.cat", "unsigned.cat"]
    status = {e.name: e.status for e in idx.entries.values()}
    assert status == {"A.cat": STATUS_OK, "b.CAT": STATUS_OK, "unsigned.cat": STATUS_UNSIGNED,
                      "empty.cat": STATUS_EMPTY, "garbage.cat": STATUS_UNPARSABLE}
    f = files(3, 1)[1]
    assert [(h.name, h.algorithm) for h in idx.lookup(f.sha1)] == [("A.cat", "sha1")]
    assert [(h.name, h.algorithm) for h in idx.find({"sha256": f.sha256})] == [("A.cat", "sha256")]
    v1 = files(2, 10)[0]
    assert [h.name for h in idx.find({"sha1": v1.sha1, "sha256": v1.sha256})] == ["b.CAT"]
    assert idx.lookup(b"\xff" * 32) == []
    # a digest listed under another algorithm does not match
    assert idx.find({"sha256": f.sha1}) == []
    hit = idx.lookup(f.sha1)[0]
    trust = TrustStore.microsoft([ca.root])
    assert idx.verify(hit.key, trust=trust, at=PINNED).status is Status.VERIFIED
    assert idx.verify(hit.key, at=PINNED).status is Status.VERIFICATION_FAILED  # Microsoft roots only
    assert idx.summary()["by_status"] == {"ok": 2, "unsigned": 1, "empty": 1, "unparsable": 1}


def test_cache_reuses_unchanged_catalogs(catroot, tmp_path, ca):
    state = tmp_path / "state"
    first = build_index(catalog_sources(catroot), state_dir=state)
    assert first.stats == {"parsed": 5, "cached": 0, "cache": "none"}
    second = build_index(catalog_sources(catroot), state_dir=state)
    assert second.stats == {"parsed": 0, "cached": 5, "cache": "used"}
    assert second.find({"sha1": files(1, 2)[0].sha1}) == first.find({"sha1": files(1, 2)[0].sha1})
    # change one catalog (new content, new size): only it is parsed again
    (catroot / "A.cat").write_bytes(build_catalog(files(4, 30), ca, 2))
    third = build_index(catalog_sources(catroot), state_dir=state)
    assert third.stats["parsed"] == 1 and third.stats["cached"] == 4
    assert third.lookup(files(1, 1)[0].sha1) == [] and third.lookup(files(1, 31)[0].sha1)
    # same size, different mtime: parsed again
    st = os.stat(catroot / "b.CAT")
    os.utime(catroot / "b.CAT", ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    assert build_index(catalog_sources(catroot), state_dir=state).stats["parsed"] == 1


def test_corrupt_cache_is_rebuilt_and_said(catroot, tmp_path):
    state = tmp_path / "state"
    build_index(catalog_sources(catroot), state_dir=state)
    (cache,) = state.iterdir()
    cache.write_text("{not json")
    idx = build_index(catalog_sources(catroot), state_dir=state)
    assert idx.stats["parsed"] == 5 and idx.stats["cache"].startswith("rebuilt")
    assert build_index(catalog_sources(catroot), state_dir=state).stats["cache"] == "used"


@pytest.mark.realdata
def test_real_catalogs_index(realdata, tmp_path):
    for rel in ("velociraptor/ntexe.cat", "signify/oem89.cat", "signify/catfiletest.cat"):
        shutil.copy(realdata(rel), tmp_path)
    idx = build_index(catalog_sources(tmp_path))
    members = {e.name: e.member_count for e in idx.entries.values()}
    assert members == {"ntexe.cat": 18, "oem89.cat": 1, "catfiletest.cat": 1}
    assert {e.name: e.status for e in idx.entries.values()}["catfiletest.cat"] == STATUS_UNSIGNED
    (hit,) = idx.lookup(bytes.fromhex("b1e795b69b4c2a901a8bc8e8b36e988c6c05d836"))
    assert hit.name == "oem89.cat"


def test_sources_and_missing(tmp_path):
    with pytest.raises(NotFound):
        catalog_sources(tmp_path / "nope")
    with pytest.raises(NotFound):
        CatalogSource.from_path(tmp_path / "nope.cat")
    idx = build_index([], state_dir=tmp_path / "s")
    assert len(idx) == 0


def test_bulk_index_equals_adding_one_by_one():
    """CatalogIndex builds its map with dict/zip in C; repeated digests (within a catalog,
    across catalogs, under two algorithms) must give add()'s ordered, de-duplicated hits."""
    from offline_fix.signing.index import CatalogEntry, CatalogIndex

    d1, d2, d3 = b"\1" * 20, b"\2" * 32, b"\3" * 20
    entries = [
        CatalogEntry("a.cat", "k/a", 1, 1, STATUS_OK, None, 2, None, ["sha1", "sha256", "sha1"], [d1, d2, d1]),
        CatalogEntry("b.cat", "k/b", 1, 1, STATUS_OK, None, 2, None, ["sha256", "unknown"], [d2, d1]),
        CatalogEntry("c.cat", "k/c", 1, 1, STATUS_OK, None, 1, None, ["sha1"], [d3]),
    ]
    bulk = CatalogIndex(entries)
    single = CatalogIndex([])
    for e in entries:
        single.add(e)
    for d in (d1, d2, d3, b"\4" * 20):
        assert bulk.lookup(d) == single.lookup(d)
    assert [(h.name, h.algorithm) for h in bulk.lookup(d1)] == [("a.cat", "sha1"), ("b.cat", "unknown")]
    assert [h.name for h in bulk.find({"sha256": d2})] == ["a.cat", "b.cat"]


def test_file_sources_read_what_was_listed(catroot, tmp_path):
    """Listed names are opened inside the listed folder, never through a link, and size and
    mtime come from the file that was read (so the cache is keyed by what was parsed)."""
    outside = tmp_path / "outside.cat"
    shutil.copy(catroot / "A.cat", outside)
    sources = {s.name: s for s in catalog_sources(catroot)}
    assert all(s.size is None for s in sources.values())  # nothing stat'ed by the listing
    (catroot / "b.CAT").unlink()
    (catroot / "b.CAT").symlink_to(outside)  # swapped for a link after listing
    idx = build_index(sources.values())
    by_name = {e.name: e for e in idx.entries.values()}
    assert by_name["b.CAT"].status == STATUS_UNPARSABLE and "cannot read" in by_name["b.CAT"].error
    assert by_name["A.cat"].status == STATUS_OK
    st = os.stat(catroot / "A.cat")
    assert (by_name["A.cat"].size, by_name["A.cat"].mtime_ns) == (st.st_size, st.st_mtime_ns)
    # an entry that could not be read is never taken from the cache (size -1 matches no file)
    state = tmp_path / "state"
    listed = catalog_sources(catroot)
    (catroot / "A.cat").rename(tmp_path / "away.cat")  # gone between listing and reading
    first = build_index(listed, state_dir=state)
    assert {e.name: e.status for e in first.entries.values()}["A.cat"] == STATUS_UNPARSABLE
    (tmp_path / "away.cat").rename(catroot / "A.cat")
    again = build_index(catalog_sources(catroot), state_dir=state)
    assert again.stats["parsed"] == 1 and again.stats["cached"] == len(again) - 1
    assert {e.name: e.status for e in again.entries.values()}["A.cat"] == STATUS_OK


@pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="needs /proc/self/fd")
def test_file_sources_close_their_folder(catroot):
    import gc

    def open_on_catroot() -> int:
        return sum(1 for fd in os.listdir("/proc/self/fd")
                   if os.path.realpath(f"/proc/self/fd/{fd}") == os.path.realpath(catroot))

    sources = catalog_sources(catroot)
    build_index(sources)
    assert open_on_catroot() == 1
    del sources
    gc.collect()
    assert open_on_catroot() == 0
