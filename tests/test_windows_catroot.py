"""offline_fix/windows/catroot.py: inventory, content checks, verdict line, baseline, restore plan.

Folder trees built here (FolderFS) stand for mounted volumes; the catalogs are test-CA catalogs
(images/synth/signing.py) and real ones from ../shared/realdata (member counts: MANIFEST.md).
"""

from __future__ import annotations

import hashlib
import json

import pytest

from offline_fix.errors import CorruptInput, NotFound
from offline_fix.target.fs import READ_CHUNK, FolderFS
from offline_fix.windows import catroot as C
from images.synth.signing import CatFile, build_catalog, make_ca

CATROOT = r"Windows\System32\CatRoot\{F750E6C3-38EE-11D1-85E5-00C04FC295EE}"
CATROOT_127D = r"Windows\System32\CatRoot\{127D0A1D-4EF2-11D1-8608-00C04FC295EE}"
PACKAGES = r"Windows\servicing\Packages"


@pytest.fixture(scope="module")
def cat():
    ca = make_ca("Inventory")
    return build_catalog([CatFile("a.sys", bytes(20), bytes(32))], ca, 2)


def tree(root, files: dict[str, bytes], dirs=(CATROOT, CATROOT_127D, PACKAGES, r"Windows\System32\catroot2")):
    for d in dirs:
        (root / d.replace("\\", "/")).mkdir(parents=True, exist_ok=True)
    for rel, data in files.items():
        path = root / rel.replace("\\", "/")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    return FolderFS(str(root))


def test_counts_missing_and_case_insensitive_names(tmp_path, cat):
    fs = tree(tmp_path, {
        rf"{CATROOT}\Package_A.CAT": cat, rf"{CATROOT}\extra.cat": cat, rf"{CATROOT}\notes.txt": b"x",
        rf"{CATROOT_127D}\one.cat": cat,
        rf"{PACKAGES}\package_a.cat": cat, rf"{PACKAGES}\Package_B.cat": cat, rf"{PACKAGES}\Package_B.mum": b"<xml/>",
        rf"{PACKAGES}\Package_C.cat": cat,
    })
    inv = C.inventory(fs, contents=False)
    assert [f.name for f in inv.catroot.files] == ["extra.cat", "Package_A.CAT"]
    assert len(inv.folders[C.CATROOT_127D].files) == 1 and inv.catroot2_present
    assert [f.name for f in inv.missing] == ["Package_B.cat", "Package_C.cat"]
    assert inv.verdict("offline-fix catroot restore T") == \
        "CatRoot is missing 2 of 3 package catalogs; run `offline-fix catroot restore T`"
    d = inv.to_dict("hint")
    assert (d["catroot_count"], d["packages_count"], d["missing"]) == (2, 3, ["Package_B.cat", "Package_C.cat"])
    assert not inv.healthy and not inv.contents_checked


def test_the_field_story_verdict_has_thousands_separators():
    def folder(role, names):
        return C.Folder(role, C.FOLDERS[role], True, [C.CatalogFile(n, n, 1) for n in names])

    names = [f"Package_{i:05d}.cat" for i in range(5980)]
    inv = C.Inventory("Windows", {C.CATROOT: folder(C.CATROOT, [n.upper() for n in names[:368]]),
                                  C.CATROOT_127D: folder(C.CATROOT_127D, []),
                                  C.PACKAGES: folder(C.PACKAGES, names)}, catroot2_present=False)
    assert inv.verdict("offline-fix catroot restore TARGET") == \
        "CatRoot is missing 5,612 of 5,980 package catalogs; run `offline-fix catroot restore TARGET`"
    assert inv.to_dict("x")["missing"][:1] == ["Package_00368.cat"]


def test_damaged_catalogs_are_reported(tmp_path, cat, realdata):
    fs = tree(tmp_path, {
        rf"{CATROOT}\good.cat": cat, rf"{CATROOT}\empty.cat": b"", rf"{CATROOT}\zero.cat": bytes(4096),
        rf"{CATROOT}\garbage.cat": b"MZ this is no catalog" * 10, rf"{CATROOT}\truncated.cat": cat[:len(cat) // 2],
        rf"{CATROOT}\catfiletest.cat": realdata("signify/catfiletest.cat").read_bytes(),
        rf"{CATROOT}\ntexe.cat": realdata("velociraptor/ntexe.cat").read_bytes(),
        rf"{PACKAGES}\oem89.cat": realdata("signify/oem89.cat").read_bytes(), rf"{PACKAGES}\zero.cat": cat,
    })
    inv = C.inventory(fs)
    status = {f.name: f.status for f in inv.catroot.files}
    assert status == {"catfiletest.cat": "unsigned", "empty.cat": "empty", "garbage.cat": "unparsable",
                      "good.cat": "ok", "ntexe.cat": "ok", "truncated.cat": "unparsable", "zero.cat": "zero-filled"}
    members = {f.name: f.members for f in inv.catroot.files}
    # MANIFEST.md: ntexe.cat has 18 members (9 files x SHA1+SHA256), catfiletest.cat 1
    assert members["ntexe.cat"] == 18 and members["catfiletest.cat"] == 1
    assert {f.name: f.members for f in inv.packages.files}["oem89.cat"] == 1
    line = inv.verdict("offline-fix catroot restore T")
    assert line.startswith("CatRoot is missing 1 of 2 package catalogs")
    assert "5 catalogs in CatRoot are empty or unparsable or unsigned or zero-filled" in line
    assert "--overwrite` replaces them" in line  # zero.cat is in Packages too
    assert "reason" in inv.catroot.by_name()["truncated.cat"].to_dict()


def test_healthy(tmp_path, cat):
    fs = tree(tmp_path, {rf"{CATROOT}\a.cat": cat, rf"{PACKAGES}\A.cat": cat})
    inv = C.inventory(fs)
    assert inv.healthy
    assert inv.verdict("x") == ("CatRoot holds all 1 package catalogs (1 catalogs in "
                                "{F750E6C3-38EE-11D1-85E5-00C04FC295EE}); no damaged catalog found")


def test_missing_folders(tmp_path, cat):
    (tmp_path / "Windows").mkdir()
    inv = C.inventory(FolderFS(str(tmp_path)))
    assert not inv.catroot.present and not inv.packages.present and not inv.healthy
    assert "does not exist" in inv.verdict("x") and "servicing\\Packages does not exist" in inv.verdict("x")
    fs = tree(tmp_path / "b", {rf"{PACKAGES}\a.cat": cat}, dirs=(PACKAGES,))
    inv = C.inventory(fs)
    assert inv.verdict("R").startswith("CatRoot\\{F750E6C3-38EE-11D1-85E5-00C04FC295EE} does not exist "
                                       "(1 package catalogs could fill it); run `R`")


def test_index_cache_reuse_and_refresh(tmp_path, cat):
    fs = tree(tmp_path / "vol", {rf"{CATROOT}\a.cat": cat, rf"{CATROOT}\b.cat": cat})
    state = str(tmp_path / "state")
    idx = C.catalog_index(fs, C.list_folder(fs, "Windows", C.CATROOT), state_dir=state)
    assert (idx.stats["parsed"], idx.stats["cached"]) == (2, 0)
    (tmp_path / "vol" / CATROOT.replace("\\", "/") / "b.cat").write_bytes(b"")
    folder = C.list_folder(fs, "Windows", C.CATROOT)
    idx = C.catalog_index(fs, folder, state_dir=state)
    assert (idx.stats["parsed"], idx.stats["cached"]) == (1, 1)
    assert {f.name: f.status for f in folder.files} == {"a.cat": "ok", "b.cat": "empty"}


@pytest.mark.parametrize("size", [0, 1, 100, READ_CHUNK - 1, READ_CHUNK, READ_CHUNK + 1, 3 * READ_CHUNK + 7])
def test_read_file_whole_and_bounded(tmp_path, size):
    """read_file gives every byte whatever the chunking, and refuses one byte over its limit."""
    data = bytes(range(256)) * (size // 256) + bytes(size % 256)
    fs = tree(tmp_path, {r"Windows\f.bin": data}, dirs=())
    assert C.read_file(fs, r"Windows\f.bin") == data
    assert C.read_file(fs, r"Windows\f.bin", limit=size) == data
    if size:
        with pytest.raises(CorruptInput, match="larger than allowed"):
            C.read_file(fs, r"Windows\f.bin", limit=size - 1)


def test_folder_catalogs_are_read_by_name_and_links_not_followed(tmp_path, cat):
    """On a folder target the CatRoot folder is opened once and its catalogs read by name: a
    catalog swapped for a link after the listing (even to a good catalog in the same volume) is
    reported unreadable, never followed; the others are read, with their exact sizes."""
    import os

    fs = tree(tmp_path / "vol", {rf"{CATROOT}\a.cat": cat, rf"{CATROOT}\b.cat": cat, rf"{PACKAGES}\b.cat": cat})
    folder = C.list_folder(fs, "Windows", C.CATROOT)
    b = tmp_path / "vol" / CATROOT.replace("\\", "/") / "b.cat"
    b.unlink()
    b.symlink_to(tmp_path / "vol" / PACKAGES.replace("\\", "/") / "b.cat")
    C.catalog_index(fs, folder, hashes=True)
    got = {f.name: (f.status, f.size, f.sha256) for f in folder.files}
    assert got["a.cat"] == ("ok", len(cat), hashlib.sha256(cat).hexdigest())
    assert got["b.cat"][0] == "unparsable"
    if os.open in os.supports_dir_fd:
        assert fs.open_folder(folder.path) is not None
    assert fs.open_folder(r"Windows\no such folder") is None


# -- baseline ------------------------------------------------------------------------------------
def test_baseline_round_trip_and_differences(tmp_path, cat, realdata):
    ntexe = realdata("velociraptor/ntexe.cat").read_bytes()
    healthy = tree(tmp_path / "healthy", {rf"{CATROOT}\a.cat": cat, rf"{CATROOT}\ntexe.cat": ntexe,
                                          rf"{CATROOT}\same.cat": cat, rf"{CATROOT_127D}\x.cat": cat})
    doc = C.make_baseline(C.inventory(healthy, hashes=True, build=17763), source="healthy")
    assert doc["build"] == 17763
    entry = {e["name"]: e for e in doc["folders"]["catroot"]["files"]}["ntexe.cat"]
    assert entry == {"name": "ntexe.cat", "size": 11477,  # size and sha256: MANIFEST.md
                     "sha256": "5b357b9f42f9d3683cf6c62ec1973923ab14373846e90ff82451db3789589b1f"}
    path = tmp_path / "baseline.json"
    path.write_text(json.dumps(doc))
    loaded = C.load_baseline(str(path))
    changed = bytearray(ntexe)
    changed[500] ^= 1
    broken = tree(tmp_path / "broken", {rf"{CATROOT}\NTEXE.cat": bytes(changed), rf"{CATROOT}\same.cat": cat,
                                        rf"{CATROOT}\new.cat": cat, rf"{CATROOT_127D}\x.cat": cat})
    inv = C.inventory(broken, hashes=True, build=17134)
    diff = C.compare_baseline(inv, loaded)
    assert diff.missing == ["catroot\\a.cat"] and diff.extra == ["catroot\\new.cat"]
    assert [c["name"] for c in diff.changed] == ["catroot\\NTEXE.cat"]
    assert diff.changed[0]["sha256"] == hashlib.sha256(bytes(changed)).hexdigest()
    assert "versus the baseline (build 17763): 1 missing, 1 extra, 1 changed" in inv.verdict("x")
    assert any("build 17763" in w and "17134" in w for w in inv.warnings)
    assert not inv.healthy


@pytest.mark.parametrize("content, field", [
    (b"not json", None),
    (b"[1, 2]", "format"),
    (json.dumps({"format": C.BASELINE_FORMAT, "version": 99}).encode(), "version"),
    (json.dumps({"format": C.BASELINE_FORMAT, "version": 1, "folders": {}}).encode(), "folders.catroot.files"),
    (json.dumps({"format": C.BASELINE_FORMAT, "version": 1, "folders": {
        "catroot": {"files": [{"name": "a.cat", "size": "big"}]}, "catroot-127d": {"files": []}}}).encode(),
     "folders.catroot.files[0]"),
])
def test_bad_baselines_are_typed_errors(tmp_path, content, field):
    path = tmp_path / "b.json"
    path.write_bytes(content)
    with pytest.raises(C.BaselineError) as info:
        C.load_baseline(str(path))
    assert info.value.field == field and info.value.exit_code == 5
    with pytest.raises(NotFound):
        C.load_baseline(str(tmp_path / "none.json"))


# -- restore plan --------------------------------------------------------------------------------
def test_restore_plan_skips_damaged_and_overwrites_only_when_asked(tmp_path, cat, realdata):
    oem = realdata("signify/oem89.cat").read_bytes()
    fs = tree(tmp_path, {
        rf"{CATROOT}\same.cat": cat, rf"{CATROOT}\zeroed.cat": bytes(len(oem)),
        rf"{PACKAGES}\same.cat": cat, rf"{PACKAGES}\zeroed.cat": oem, rf"{PACKAGES}\new.cat": oem,
        rf"{PACKAGES}\broken.cat": b"\x30\x82\xff", rf"{PACKAGES}\unsigned.cat": realdata("signify/catfiletest.cat").read_bytes(),
    })
    inv = C.inventory(fs, contents=False)
    plan = C.plan_restore(fs, inv)
    assert [(i.name, i.size, i.replaces) for i in plan.items] == [("new.cat", len(oem), None)]
    assert plan.items[0].dest == rf"{CATROOT}\new.cat" and plan.items[0].content == oem
    assert {s["name"]: s["reason"].split(":")[0] for s in plan.skipped} == {
        "broken.cat": "the package catalog is unparsable", "unsigned.cat": "the package catalog is unsigned"}
    plan = C.plan_restore(fs, inv, overwrite=True)
    assert [i.name for i in plan.items] == ["new.cat", "zeroed.cat"]  # same.cat is identical: left alone
    zeroed = plan.items[1]
    assert zeroed.replaces.name == "zeroed.cat" and zeroed.old == bytes(len(oem))
    assert zeroed.to_dict()["replaces"]["size"] == len(oem) and plan.bytes == 2 * len(oem)
